# The chat server image used by compose.yaml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY realtime ./realtime
COPY rest ./rest
COPY models ./models
RUN pip install --no-cache-dir .
ENV CHATD_ENV=production
EXPOSE 8080
CMD ["chatd", "serve", "--host", "0.0.0.0", "--port", "8080"]
