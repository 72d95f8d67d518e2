"""The embedded model's worker process, really run and really killed.

Every test here drives the real SmolLM2 in a real worker process and ends it with real
signals.  The CPU is faked where it matters (a cpuinfo file with or without AMX), so
the tests mean the same on every machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator import events
from orchestrator.llm.client import LLMCallError, UnifiedClient
from orchestrator.llm.providers import cpu_features, local_worker
from orchestrator.llm.providers import local_worker_main as worker_main
from orchestrator.llm.providers.base import ProviderError, ProviderRequest, ProviderUnavailable
from orchestrator.llm.providers.cpu_features import CPUINFO_ENV, SAFE_MODE_ENV, KernelChoice, choose_kernels
from orchestrator.llm.providers.local import LocalProvider, default_model_path
from orchestrator.llm.providers.local_worker import LocalWorker, WorkerCrashed, describe_exit

STORY = "Write a very long story about a lighthouse keeper and the sea, with many chapters."
PLAIN_CPU = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n"
AMX_CPU = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Test\n"
    "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
)


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """Point the CPU flag reader at a fake cpuinfo: ``fake_cpu(PLAIN_CPU)``."""

    def use(text: str) -> Path:
        path = tmp_path / "cpuinfo"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv(CPUINFO_ENV, str(path))
        return path

    monkeypatch.delenv(SAFE_MODE_ENV, raising=False)
    return use


@pytest.fixture
def own_workers(monkeypatch):
    """The test's providers get workers of their own (a crash here must not switch the
    shared worker of the rest of the suite to the safe mode); stopped afterwards."""
    monkeypatch.setattr(local_worker, "_WORKERS", {})
    yield
    for worker in local_worker.running_workers():
        worker.kill()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _kill_mid_generation(provider: LocalProvider, sig: int, timeout: float = 120):
    """Start a long generation, kill the worker with ``sig`` a few tokens in; the error."""
    dispatched = threading.Event()
    request = ProviderRequest(
        "smollm2-135m", STORY, max_tokens=400, temperature=0.8, timeout=timeout, on_dispatch=dispatched.set
    )
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        try:
            asyncio.run(provider.complete(request))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    assert dispatched.wait(60), "the generation never started"
    pid = provider.worker().pid
    time.sleep(0.3)  # a few tokens in: 400 tokens take seconds on this model
    assert thread.is_alive(), "the generation ended before the kill"
    os.kill(pid, sig)
    thread.join(60)
    return outcome.get("error"), pid


@pytest.mark.parametrize(
    "sig, kernel_signal",
    [
        (signal.SIGSEGV, True),
        (signal.SIGILL, True),
        (signal.SIGBUS, True),
        (signal.SIGABRT, False),  # a GGML_ASSERT (e.g. a grammar that reaches an empty stack)
        (signal.SIGKILL, False),  # the OOM killer
    ],
)
def test_a_worker_killed_mid_generation_fails_the_call_naming_the_signal(own_workers, fake_cpu, sig, kernel_signal):
    fake_cpu(PLAIN_CPU)
    provider = LocalProvider()
    worker = provider.worker()
    error, pid = _kill_mid_generation(provider, sig)
    assert isinstance(error, WorkerCrashed)
    name = signal.Signals(sig).name
    assert f"died with {name} (signal {int(sig)})" in str(error)
    assert error.transient and error.max_retries == 1 and error.error_type == "WorkerCrashed"
    # restarted at once, and the call can be served again
    assert worker.pid is not None and worker.pid != pid
    assert worker.crashes == [f"died with {name} (signal {int(sig)})"]
    answer = asyncio.run(provider.complete(ProviderRequest("smollm2-135m", "Name three colours.", max_tokens=24)))
    assert answer.output_tokens > 1 and answer.text.strip()
    assert worker.ready is not None and worker.ready["use_extra_bufts"] is (not worker.safe_mode)


class _Doomed:
    """A real process standing in for a worker, to be killed by a real signal: decides
    the safe-mode switch on any CPU (on an AMX machine a real worker is safe from the start)."""

    def __init__(self, worker: LocalWorker) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker._proc = self.proc

    def die(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)
        self.proc.wait(10)


@pytest.mark.parametrize(
    "sig, switches",
    [
        (signal.SIGSEGV, True),
        (signal.SIGILL, True),
        (signal.SIGBUS, True),
        (signal.SIGFPE, True),
        (signal.SIGABRT, False),
        (signal.SIGKILL, False),
    ],
)
def test_a_kernel_signal_with_the_fast_kernels_on_switches_to_the_safe_mode(own_workers, fake_cpu, sig, switches):
    fake_cpu(PLAIN_CPU)
    worker = LocalWorker(default_model_path(), 512, 1, KernelChoice(False, "test: fast kernels on"))
    _Doomed(worker).die(sig)
    error = worker._crashed()
    try:
        assert isinstance(error, WorkerCrashed) and signal.Signals(sig).name in str(error)
        assert worker.safe_mode is switches
        assert ("restarted in the safe mode" in str(error)) is switches
        if switches:
            assert worker.kernels.reason == (
                f"its worker died with {signal.Signals(sig).name} (signal {int(sig)}) with llama.cpp's fast kernels on"
            )
        assert worker.pid is not None  # the next worker is already starting, in the chosen mode
    finally:
        worker.kill()


def test_the_user_can_keep_the_fast_kernels_after_a_crash(own_workers, fake_cpu, monkeypatch):
    fake_cpu(PLAIN_CPU)
    monkeypatch.setenv(SAFE_MODE_ENV, "off")
    worker = LocalWorker(default_model_path(), 512, 1)
    assert worker.safe_mode is False
    _Doomed(worker).die(signal.SIGSEGV)
    error = worker._crashed()
    worker.kill()
    assert "SIGSEGV" in str(error) and "safe mode" not in str(error) and worker.safe_mode is False


def test_a_cpu_with_amx_starts_in_the_safe_mode_and_generates(own_workers, fake_cpu):
    """The crash this avoids needs a prompt of two or more tokens: the chat template alone
    is dozens."""
    fake_cpu(AMX_CPU)
    provider = LocalProvider()
    worker = provider.worker()
    assert worker.safe_mode and "amx_int8" in worker.kernels.reason
    answer = asyncio.run(
        provider.complete(ProviderRequest("smollm2-135m", "Count from one to five.", max_tokens=32, temperature=0.0))
    )
    assert answer.input_tokens > 2 and answer.output_tokens > 1
    assert worker.ready is not None and worker.ready["use_extra_bufts"] is False
    assert worker.crashes == []


def test_the_safe_mode_can_be_asked_for_and_the_fast_kernels_are_kept_elsewhere(fake_cpu, monkeypatch):
    fake_cpu(PLAIN_CPU)
    flags = cpu_features.cpu_flags()
    assert "avx2" in flags and "amx_int8" not in flags
    assert choose_kernels(flags).safe_mode is False
    monkeypatch.setenv(SAFE_MODE_ENV, "on")
    assert choose_kernels(flags).safe_mode is True
    monkeypatch.setenv(SAFE_MODE_ENV, "off")
    assert choose_kernels(frozenset({"amx_int8"})).safe_mode is False
    monkeypatch.setenv(SAFE_MODE_ENV, "sometimes")
    assert cpu_features.setting_problem() == f"{SAFE_MODE_ENV} must be one of auto, on, off, not 'sometimes'"
    assert choose_kernels(flags).safe_mode is False  # a bad value reads as auto (the CLI refuses it first)
    monkeypatch.delenv(SAFE_MODE_ENV)
    # llama.cpp's own system info can say what the flags did not
    assert choose_kernels(flags, "CPU : AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1").safe_mode is True
    assert choose_kernels(flags, "CPU : AVX2 = 1 | REPACK = 1").safe_mode is False


def test_cpu_flags_are_read_on_x86_and_arm(tmp_path):
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\nCPU part\t: 0xd0c\n")
    assert {"asimd", "sve"} <= cpu_features.cpu_flags(arm)
    assert cpu_features.cpu_flags(tmp_path / "missing") == frozenset()
    x86 = tmp_path / "x86"
    x86.write_text(AMX_CPU)
    assert cpu_features.cpu_model(x86) == "Intel(R) Xeon(R) Test"


def test_the_worker_restarts_in_the_safe_mode_when_llama_cpp_reports_amx(own_workers, fake_cpu):
    """The flags said nothing (another OS, a hidden flag), llama.cpp's build says AMX."""
    fake_cpu(PLAIN_CPU)
    worker = LocalWorker(default_model_path(), 8192, 1)
    assert worker._build_needs_safe_mode({"system_info": "CPU : AVX2 = 1 | AMX_INT8 = 1 |"}) is True
    assert worker.safe_mode and "AMX" in worker.kernels.reason
    assert worker._build_needs_safe_mode({"system_info": "CPU : AVX2 = 1 | AMX_INT8 = 1 |"}) is False


def test_the_model_parameter_shim_sets_the_field_for_one_constructor_call():
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params
    with worker_main.model_params_with(use_extra_bufts=False):
        assert bindings.llama_model_default_params().use_extra_bufts is False
    assert bindings.llama_model_default_params is original
    assert bindings.llama_model_default_params().use_extra_bufts is True  # llama.cpp's default
    with pytest.raises(RuntimeError, match="no model parameter no_such_field"):
        with worker_main.model_params_with(no_such_field=1):
            pass


def test_the_client_retries_a_crashed_call_once_and_the_spans_are_whole(own_workers, fake_cpu, span_exporter, recorded):
    """The first attempt's worker is killed by SIGSEGV mid-generation: that attempt's span
    ends as an error naming the signal, the client retries once on the restarted worker,
    and the call succeeds."""
    fake_cpu(PLAIN_CPU)
    provider = LocalProvider()
    client = UnifiedClient({"local": provider})
    kills: list[int] = []

    def kill_first(sender, **_):
        if not kills:
            pid = provider.worker().pid
            kills.append(pid)
            threading.Timer(0.3, os.kill, (pid, signal.SIGSEGV)).start()

    events.llm_call_dispatched.connect(kill_first, weak=False)
    try:
        answer = asyncio.run(
            client.call("smollm2-135m", STORY, max_tokens=120, temperature=0.8, retries=0, timeout=120)
        )
    finally:
        events.llm_call_dispatched.disconnect(kill_first)
    assert answer.output_tokens > 0 and answer.attempts == 2
    spans = span_exporter.spans("llm_call:")
    assert len(spans) == 2 and all(s.end_time is not None for s in spans)
    failed, retried = sorted(spans, key=lambda s: s.start_time)
    assert failed.attributes["error.type"] == "WorkerCrashed" and "SIGSEGV" in failed.status.description
    assert retried.status.is_ok and retried.attributes["gen_ai.usage.output_tokens"] == answer.output_tokens
    (retry,) = [p for p in recorded if isinstance(p, events.LlmRetry)]
    assert retry.error_type == "WorkerCrashed" and retry.delay_seconds == 0.0
    started = [p for p in recorded if isinstance(p, events.LlmCallStarted)]
    finished = [p for p in recorded if isinstance(p, events.LlmCallFinished)]
    assert len(started) == len(finished) == 2


@pytest.mark.parametrize("retries", [0, 4])
def test_a_call_whose_worker_dies_twice_is_retried_once_then_fails(own_workers, fake_cpu, retries):
    fake_cpu(PLAIN_CPU)
    provider = LocalProvider()
    client = UnifiedClient({"local": provider})

    def kill_every(sender, **_):
        threading.Timer(0.3, os.kill, (provider.worker().pid, signal.SIGABRT)).start()

    events.llm_call_dispatched.connect(kill_every, weak=False)
    try:
        with pytest.raises(LLMCallError) as info:
            asyncio.run(
                client.call("smollm2-135m", STORY, max_tokens=300, temperature=0.8, retries=retries, timeout=120)
            )
    finally:
        events.llm_call_dispatched.disconnect(kill_every)
    assert info.value.attempts == 2 and info.value.error_type == "WorkerCrashed"
    assert "SIGABRT" in str(info.value)
    assert len(provider.worker().crashes) == 2


def test_a_hung_worker_is_killed_at_its_deadline(own_workers, fake_cpu, monkeypatch):
    """Native code that stops answering (here: SIGSTOP) cannot hold the lock for good."""
    fake_cpu(PLAIN_CPU)
    monkeypatch.setattr(local_worker, "HANG_GRACE", 0.5)
    provider = LocalProvider()
    error, pid = _kill_mid_generation(provider, signal.SIGSTOP, timeout=1.0)
    assert isinstance(error, ProviderError) and error.error_type == "TimeoutError" and not error.transient
    assert "stopped answering" in str(error)
    _wait_for(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", 10)
    answer = asyncio.run(provider.complete(ProviderRequest("smollm2-135m", "Say hi.", max_tokens=8)))
    assert answer.output_tokens > 0 and provider.worker().pid != pid


def test_the_worker_sees_none_of_the_users_secrets(own_workers, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-worker-must-not-see-this")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-worker-must-not-see-this")
    provider = LocalProvider()
    provider.start()
    pid = provider.worker().pid
    # Popen returns once exec closed its error pipe, which the kernel does before it sets
    # the new program's environment up: /proc/PID/environ may read empty for a moment
    _wait_for(lambda: Path(f"/proc/{pid}/environ").read_bytes() != b"", 10)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"must-not-see-this" not in environ and b"API_KEY" not in environ
    assert b"PATH=" in environ


def test_the_worker_dies_with_its_parent(tmp_path):
    """A parent killed by SIGKILL runs no cleanup; the worker sees its request pipe close."""
    code = (
        "import sys, time\n"
        "from orchestrator.llm.providers.local import LocalProvider\n"
        "p = LocalProvider(); p.start(); print(p.worker().pid, flush=True); time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert Path(f"/proc/{pid}").exists()
        parent.kill()
        parent.wait(10)
        _wait_for(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", 15)
    finally:
        parent.kill()


def test_a_model_file_llama_cpp_cannot_load_makes_the_model_unavailable(own_workers, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    provider = LocalProvider(broken)
    with pytest.raises(ProviderUnavailable, match="cannot load local model broken.gguf"):
        asyncio.run(provider.complete(ProviderRequest("smollm2-135m", "Say hi.", max_tokens=4)))


def test_names_of_deaths():
    assert describe_exit(-signal.SIGSEGV) == "died with SIGSEGV (signal 11)"
    assert describe_exit(-signal.SIGKILL) == "died with SIGKILL (signal 9)"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(None) == "stopped answering"
    assert worker_main.parse_fault("sigsegv:3") == (signal.SIGSEGV, 3)
    assert worker_main.parse_fault("SIGABRT") == (signal.SIGABRT, 1)
    assert worker_main.parse_fault("nonsense:x") is None
    assert worker_main.parse_fault("") is None


def test_frames_round_trip_and_a_broken_stream_ends():
    import io

    stream = io.BytesIO(worker_main.encode_frame({"op": "done", "text": "é" * 3}) + b"\x00\x00")
    assert worker_main.read_frame(stream) == {"op": "done", "text": "ééé"}
    assert worker_main.read_frame(stream) is None  # a torn header is the end, not garbage
    huge = io.BytesIO(worker_main.HEADER.pack(worker_main.MAX_FRAME + 1))
    assert worker_main.read_frame(huge) is None


def test_a_kernel_choice_is_reported(fake_cpu):
    fake_cpu(AMX_CPU)
    assert LocalWorker(default_model_path(), 512, 1).kernels == KernelChoice(
        True, "the CPU has amx_int8, amx_tile, amx_bf16 (llama.cpp's AMX kernels crash on it)"
    )


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
