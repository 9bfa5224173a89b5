from lelp.cli import main

main()
