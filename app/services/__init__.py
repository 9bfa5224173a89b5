"""Business logic below the routers: each function takes a session and plain values."""
