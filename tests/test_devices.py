"""What benchmarks print as the machine they measured on."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from latentrl.devices import device_description

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx512f amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx512f amx_bf16 amx_tile
"""


def test_a_cpu_is_named_by_its_model_and_its_bf16_units(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    cpu = torch.device("cpu")
    assert device_description(cpu, cpuinfo) == "Intel(R) Xeon(R) Processor, AMX bf16"
    cpuinfo.write_text(CPUINFO.replace(" amx_bf16 amx_tile", "").replace("Intel(R) Xeon(R)", "AMD"))
    assert device_description(cpu, cpuinfo) == "AMD Processor"
    fallback = platform.processor() or platform.machine()
    assert device_description(cpu, tmp_path / "missing") == fallback
