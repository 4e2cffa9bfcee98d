"""What the benchmarks here share: a fresh MariaDB database, latency summaries."""

from __future__ import annotations

import statistics

MARIADB = "root@127.0.0.1:3306"


def recreate_database(name: str) -> str:
    """Drop and create ``name`` on the local MariaDB; returns its SQLAlchemy URL."""
    import pymysql

    user, _, hostport = MARIADB.partition("@")
    host, _, port = hostport.partition(":")
    connection = pymysql.connect(host=host, port=int(port), user=user)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    connection.close()
    return f"mysql+aiomysql://{MARIADB}/{name}?charset=utf8mb4"


def percentiles(seconds: list[float]) -> dict[str, float | int]:
    """Count, p50, p90, p99, max and mean, in milliseconds."""
    if not seconds:
        return {"count": 0}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }
