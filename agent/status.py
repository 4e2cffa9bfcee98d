"""The status snapshot of docs/protocol.md section 3, read from the operating system."""

from __future__ import annotations

from typing import Any

import psutil

MB = 1024 * 1024


def collect(disk_path: str = "/") -> dict[str, Any]:
    """One ``upload_status_info`` payload (without ``device_id``).

    Blocking (psutil reads /proc and calls statvfs): the runner calls it in a thread.
    CPU times stay cumulative seconds; the cloud turns two uploads into percentages.
    """
    cpu = psutil.cpu_times()
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    return {
        "CPU_info": {
            "user_cpu_time": round(cpu.user, 2),
            "system_cpu_time": round(cpu.system, 2),
            "idle_cpu_time": round(cpu.idle, 2),
            "io_wait_cpu_time": round(getattr(cpu, "iowait", 0.0), 2),
        },
        "Memory_info": {
            "total_memory_mb": memory.total // MB,
            "free_memory_mb": memory.free // MB,
            "buff_cache_mb": (getattr(memory, "buffers", 0) + getattr(memory, "cached", 0)) // MB,
        },
        "Disk_info": {
            "root_total_size_mb": disk.total // MB,
            "root_used_size_mb": disk.used // MB,
            "root_used_percent": round(disk.percent, 1),
        },
        "dev_state": "online",
    }
