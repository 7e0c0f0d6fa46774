"""RabbitMQ: the task publisher, the event consumer, queue inspection, dead-letter queues, deployment check."""
