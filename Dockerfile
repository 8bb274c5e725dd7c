# The orchestrator worker image (used by docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY domain ./domain
COPY wire ./wire
COPY orchestrator ./orchestrator
COPY streams ./streams
COPY tables ./tables
COPY agents ./agents
COPY bridges ./bridges
COPY simulators ./simulators
EXPOSE 6066
CMD ["python", "-m", "orchestrator", "worker", "-l", "info"]
