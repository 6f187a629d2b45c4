# One image for every process of the service; docker-compose.yml picks the command:
#   API     uvicorn api.main:app --host 0.0.0.0 --port 8000 ...   (the default below)
#   worker  python worker.py
#   tools   campaigns migrate | campaigns sinks | campaigns token ...
# Configuration comes from CAMPAIGNS_* environment variables (README.md lists them all).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 campaigns
USER campaigns

EXPOSE 8000
# --http: uvicorn's httptools parser with a bound on the request head (api/edge.py), so one huge header
# cannot hold the event loop. No CAMPAIGNS_ENVIRONMENT here: unset is production, which refuses the
# published development secrets (docker-compose.yml says `development` explicitly).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20", \
     "--http", "api.edge:HttpToolsWithHeadLimit"]
