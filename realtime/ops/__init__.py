"""Operations: drain on SIGTERM, background loops, metrics, JSON logs, the dashboard, the Admin UI."""
