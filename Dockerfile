FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY plumbing ./plumbing
COPY orchestrator ./orchestrator
COPY workers ./workers
RUN pip install --no-cache-dir . uvloop
USER nobody
