# Yezhu: one image for the web process (`yezhu run`) and job workers (`yezhu worker`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY channels ./channels
COPY nlu ./nlu
COPY knowledge ./knowledge
COPY actions ./actions
COPY migrations ./migrations
RUN pip install --no-cache-dir .
RUN useradd --create-home yezhu
USER yezhu
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
CMD ["yezhu", "run", "--host", "0.0.0.0", "--port", "8080"]
