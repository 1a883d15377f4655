# The chat server image used by compose.yaml.
FROM node:20-slim AS frontend
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
# The server runs as an unprivileged user; it writes only to /data (and /uploads in compose).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin chatd \
    && mkdir -p /data /uploads && chown chatd:chatd /data /uploads
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY chatd ./chatd
COPY server ./server
COPY realtime ./realtime
COPY rest ./rest
COPY models ./models
COPY widget_static ./widget_static
COPY --from=frontend /app/node_modules ./node_modules
# Editable install: the server finds widget_static/ and node_modules/ beside its packages.
# constraints.txt: the exact versions the tests ran with.
RUN pip install --no-cache-dir -c constraints.txt -e .
ENV CHATD_ENV=production CHATD_DATA_DIR=/data
VOLUME /data
USER chatd
EXPOSE 8080
# /healthz answers 200 when the database and Redis answer (urlopen raises on 503).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["chatd", "serve", "--host", "0.0.0.0", "--port", "8080", "--wait-for-services", "60"]
