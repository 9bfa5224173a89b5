# One image for the API and the worker (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    LELP_DATA_DIR=/data

WORKDIR /srv/lelp

# CPU wheel of torch first (small, no CUDA); a GPU image would take the CUDA wheel here.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies before the code, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p lelp app worker && touch lelp/__init__.py app/__init__.py worker/__init__.py \
    && pip install -e ".[service,s3,http]" \
    && rm -rf lelp app worker

COPY lelp ./lelp
COPY app ./app
COPY worker ./worker
COPY alembic.ini ./

RUN useradd --create-home --uid 10001 lelp && mkdir -p /data && chown lelp /data
USER lelp
VOLUME ["/data"]
EXPOSE 8000

# Default: the API. The worker service overrides the command with `lelp worker`.
CMD ["lelp", "api", "--host", "0.0.0.0", "--port", "8000"]
