# One image for every Baton process: the orchestrator by default (CMD), a worker with
# `python -m workers <service>` (docker-compose.yml runs one per built-in service).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY plumbing ./plumbing
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY clients ./clients
RUN pip install --no-cache-dir . uvloop
USER nobody
ENV ORCHESTRATOR_HOST=0.0.0.0 ORCHESTRATOR_PORT=8000
# 8000: the orchestrator's API, dashboard, WebSockets and /metrics; 9101-9104: worker /metrics
# (BATON_WORKER_METRICS_PORT, one per worker container in docker-compose.yml).
EXPOSE 8000 9101 9102 9103 9104
# The orchestrator's /health (200 when RabbitMQ and Redis answer); worker containers override it with their /metrics.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ORCHESTRATOR_PORT', '8000'), timeout=3)"]
CMD ["python", "-m", "orchestrator"]
