# The chat server image used by compose.yaml.
FROM node:20-slim AS frontend
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY realtime ./realtime
COPY rest ./rest
COPY models ./models
COPY widget_static ./widget_static
COPY --from=frontend /app/node_modules ./node_modules
# Editable install: the server finds widget_static/ and node_modules/ beside its packages.
RUN pip install --no-cache-dir -e .
ENV CHATD_ENV=production CHATD_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
CMD ["chatd", "serve", "--host", "0.0.0.0", "--port", "8080"]
