# Worker image: the package plus the examples, run with the dramatiq CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dramatiq_encore ./dramatiq_encore
COPY examples ./examples
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["encore", "worker", "examples.order_processing.run", "-p", "2", "-t", "8"]
