# One image for every Waymark process:
#   waymark api          (default CMD) the FastAPI app on WAYMARK_API_HOST:WAYMARK_API_PORT
#   waymark worker       the Temporal worker
#   waymark db upgrade   the database migrations (one-shot)
# Configuration comes from the environment only (see core/settings.py and docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 waymark \
    && useradd --system --uid 10001 --gid waymark --create-home --home-dir /home/waymark \
       --shell /usr/sbin/nologin waymark

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that editing the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (dependencies are already there).
COPY . .
RUN pip install --no-deps . \
    && waymark --help > /dev/null

USER waymark

EXPOSE 8000
CMD ["waymark", "api"]
