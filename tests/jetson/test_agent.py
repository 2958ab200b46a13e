"""The profiling agent over real HTTP on 127.0.0.1 (urllib / http.client only), with a real ONNX model timed by
onnxruntime. TensorRT is not installed here: the trt and trtexec backends are checked to be refused cleanly."""

import base64
import http.client
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from jetson.agent import protobuf_fields, serve
from jetson.store import JobStore

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from jetson_helpers import FAST, MODEL, call, profile, python36, submit, tiny_onnx, wait  # noqa: E402


@pytest.fixture
def agent(tmp_path):
    server = serve("127.0.0.1", 0, state_dir=tmp_path / "state", tegrastats=str(tmp_path / "no-tegrastats"),
                   trtexec=str(tmp_path / "no-trtexec")).start()
    yield server
    server.close()


def test_device_reports_board_backends_and_limits(agent):
    status, info = call(agent, "GET", "/v1/device")
    assert status == 200
    assert info["agent"]["version"] and info["agent"]["token_required"] is False
    assert info["agent"]["max_body_mb"] == 512
    assert info["backends"]["onnxruntime"]["available"] is True
    assert info["backends"]["trt"]["available"] is False and "TensorRT" in info["backends"]["trt"]["reason"]
    assert info["backends"]["trtexec"]["available"] is False
    assert info["board"]["cpu_count"] >= 1 and info["board"]["python"]
    assert "power_mode" in info["board"] and "clocks" in info["board"]


def test_profiles_a_real_model_end_to_end(agent):
    job = profile(agent, input_shape=[1, 3, 32, 32])
    assert job["status"] == "done", job["error"]
    latency = job["result"]["latency"]
    # warm-up runs at least the requested count and at least 0.5 s (deploy.onnxruntime_runner)
    assert latency["runs"] == 5 and latency["warmup"] >= 1 and len(latency["samples_ms"]) == 5
    assert 0 < latency["min_ms"] <= latency["median_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert latency["info"]["runner"] == "onnxruntime" and latency["info"]["threads"] == 1
    assert job["options"]["backend"] == "onnxruntime" and job["options"]["precision"] == "fp32"
    assert job["model"]["sha256"] and job["model"]["bytes"] == len(MODEL) and job["model"]["name"] == "tiny.onnx"
    assert set(job["device"]) >= {"model", "l4t", "jetpack", "tensorrt", "power_mode", "clocks_pinned"}
    window = job["result"]["window"]
    assert job["started_at"] <= window["start"] < window["end"] <= job["finished_at"]
    assert job["result"]["tegrastats"] is None  # asked off
    with_tegra = profile(agent, tegrastats=True)
    assert with_tegra["result"]["tegrastats"]["available"] is False
    assert "not found" in with_tegra["result"]["tegrastats"]["reason"]


def test_dynamic_batch_model_needs_a_shape(agent):
    dynamic = tiny_onnx(batch="N")
    status, reply = submit(agent, model=dynamic)
    assert status == 400 and reply["field"] == "input_shape" and "dynamic" in reply["error"]
    assert profile(agent, model=dynamic, input_shape="2,3,32,32")["result"]["latency"]["info"]["input_shapes"] == \
        {"x": [2, 3, 32, 32]}


def _bad_requests():
    """(case, request kwargs for `call`, expected status, expected field)."""
    def body(model=MODEL, **opts):
        return {"onnx": base64.b64encode(model).decode(), "options": dict(FAST, **opts)}

    cases = [
        ("bad JSON", dict(body=b'{"onnx": "AAAA", '), 400, None),
        ("JSON not an object", dict(body=b"[1, 2]"), 400, None),
        ("onnx missing", dict(body={"options": FAST}), 400, "onnx"),
        ("onnx not base64", dict(body={"onnx": "not base64!", "options": FAST}), 400, "onnx"),
        ("not-ONNX bytes", dict(body=body(b"\x00\x01 definitely not protobuf" * 10)), 400, "onnx"),
        ("a text file", dict(body=body(b"name: yolov5n\nlayers: 3\n")), 400, "onnx"),
        ("unknown backend", dict(body=body(backend="tflite")), 400, "backend"),
        ("trt absent here", dict(body=body(backend="trt")), 400, "backend"),
        ("trtexec absent here", dict(body=body(backend="trtexec")), 400, "backend"),
        ("fp16 on onnxruntime", dict(body=body(precision="fp16")), 400, "precision"),
        ("bad shape text", dict(body=body(input_shape="1,3,x,32")), 400, "input_shape"),
        ("zero in shape", dict(body=body(input_shape=[0, 3, 32, 32])), 400, "input_shape"),
        ("shape of wrong rank", dict(body=body(input_shape=[1, 3, 32])), 400, "input_shape"),
        ("shape against fixed dims", dict(body=body(input_shape=[1, 3, 64, 64])), 400, "input_shape"),
        ("iterations zero", dict(body=body(iterations=0)), 400, "iterations"),
        ("warmup as text", dict(body=body(warmup="10")), 400, "warmup"),
        ("unknown option", dict(body=body(iteration=5)), 400, "iteration"),
        ("unknown body field", dict(body=dict(body(), model="x")), 400, "model"),
        ("wrong content type", dict(body=MODEL, headers={"Content-Type": "application/octet-stream"}), 415,
         "Content-Type"),
    ]
    for cut in (1, 10, len(MODEL) // 3, len(MODEL) // 2, len(MODEL) - 50, len(MODEL) - 1):
        cases.append(("ONNX truncated to {} bytes".format(cut), dict(body=body(MODEL[:cut])), 400, "onnx"))
    return cases


@pytest.mark.parametrize("case,request_kwargs,status,field", _bad_requests(), ids=[c[0] for c in _bad_requests()])
def test_bad_input_gets_4xx_json_and_the_agent_keeps_serving(agent, case, request_kwargs, status, field):
    got, reply = call(agent, "POST", "/v1/profile", **request_kwargs)
    assert got == status, reply
    assert reply["error"] and reply["field"] == field
    good, accepted = submit(agent)
    assert good == 202, accepted


def test_truncations_are_caught_without_the_onnx_package_too():
    assert protobuf_fields(MODEL) >= {1, 7, 8}
    for cut in range(1, len(MODEL)):
        try:
            missing = {1, 7, 8} - protobuf_fields(MODEL[:cut])
        except ValueError:
            continue
        assert missing, "a cut at {} bytes looked like a whole model".format(cut)


def test_unknown_paths_and_job_ids_are_404(agent):
    for path in ("/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/nope", "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
                 "/v1/nothing"):
        status, reply = call(agent, "GET", path)
        assert status == 404 and reply["error"], path
    assert call(agent, "POST", "/v1/jobs", {"x": 1})[0] == 404
    assert call(agent, "GET", "/v1/jobs")[0] == 200


def test_oversized_body_is_refused_without_being_read(tmp_path):
    server = serve("127.0.0.1", 0, state_dir=tmp_path, max_body_mb=1).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.putrequest("POST", "/v1/profile")  # announces a terabyte, sends none of it
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 ** 12))
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 413 and json.loads(reply.read().decode())["field"] == "onnx"
        conn.close()
        status, body = call(server, "POST", "/v1/profile", b"x" * (2 * 2 ** 20))  # a client that sends it all
        assert status == 413 and "limit of 1 MB" in body["error"]
        assert submit(server)[0] == 202
    finally:
        server.close()


def test_token_is_required_off_loopback_or_when_asked(tmp_path):
    with pytest.raises(ValueError, match="needs a token"):
        serve("0.0.0.0", 0, state_dir=tmp_path)
    server = serve("0.0.0.0", 0, state_dir=tmp_path, token="s3cret").start()  # traffic still goes to 127.0.0.1
    try:
        assert call(server, "GET", "/v1/device")[0] == 401
        assert call(server, "GET", "/v1/device", token="wrong")[0] == 401
        status, reply = submit(server)
        assert status == 401 and reply["field"] == "X-Edgeprune-Token"
        assert call(server, "GET", "/v1/device", token="s3cret")[0] == 200
        assert call(server, "GET", "/v1/device", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, reply = submit(server, token="s3cret")
        assert status == 202
        assert wait(server, reply["job"], token="s3cret")["status"] == "done"
    finally:
        server.close()
    local = serve("127.0.0.1", 0, state_dir=tmp_path, token="s3cret", require_token=True).start()
    try:
        assert call(local, "GET", "/v1/jobs")[0] == 401
        assert call(local, "GET", "/v1/jobs", token="s3cret")[0] == 200
    finally:
        local.close()


def test_sixteen_clients_at_once_all_answered_and_measurements_never_overlap(agent):
    jobs, errors = [], []

    def client():
        try:
            status, reply = submit(agent)
            assert status == 202, reply
            jobs.append(wait(agent, reply["job"]))
        except Exception as e:  # collected: an assert in a thread would pass unnoticed
            errors.append(e)
    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(jobs) == 16
    assert all(j["status"] == "done" for j in jobs)
    windows = sorted((j["result"]["window"]["start"], j["result"]["window"]["end"]) for j in jobs)
    for (_s0, end), (start, _e1) in zip(windows, windows[1:]):
        assert end <= start, "two measurements overlapped"


def test_restart_keeps_finished_results_and_fails_unfinished_jobs(tmp_path):
    state = tmp_path / "state"
    first = serve("127.0.0.1", 0, state_dir=state).start()
    try:
        done = profile(first)
    finally:
        first.close()
    assert done["status"] == "done"
    stranded = JobStore(state).create(MODEL, dict(FAST))["id"]  # queued when the agent "crashed"
    second = serve("127.0.0.1", 0, state_dir=state).start()
    try:
        status, again = call(second, "GET", "/v1/jobs/" + done["id"])
        assert status == 200 and again == done
        status, lost = call(second, "GET", "/v1/jobs/" + stranded)
        assert lost["status"] == "failed" and "stopped before this job finished" in lost["error"]["message"]
        assert profile(second)["status"] == "done"
    finally:
        second.close()
    assert not list((state / "models").iterdir())  # no model left behind once its job ended


PY36_CHECK = r"""
import base64, json, socket, sys, urllib.error, urllib.request
from jetson.agent import check_onnx, serve
from jetson.jobs import OptionError, parse_options
from jetson.limits import Limits
from jetson.tegrastats import parse_file
assert sys.version_info[:2] == (3, 6), sys.version
samples, skipped = parse_file(sys.argv[2])
assert samples[0].rails["VDD_IN"] == (3566, 3566) and skipped == 2
server = serve("127.0.0.1", 0, state_dir=sys.argv[3]).start()
def post(data):
    body = json.dumps({"onnx": base64.b64encode(data).decode(), "options": {"backend": "onnxruntime"}}).encode()
    req = urllib.request.Request(server.url + "/v1/profile", data=body, headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())["field"]
try:
    assert urllib.request.urlopen(server.url + "/v1/device").status == 200
    with open(sys.argv[1], "rb") as f:
        model = f.read()
    check_onnx(model, parse_options({}))  # with onnx, or its protobuf-level fallback where onnx is missing
    try:
        check_onnx(model[:len(model) // 2], parse_options({}))
        raise AssertionError("a truncated model passed")
    except OptionError as e:
        assert e.field == "onnx"
    assert post(model) in (202, (400, "backend"))  # 400 where onnxruntime is not installed for 3.6
    with open(sys.argv[4], "rb") as f:
        dynamic = f.read()
    limits = Limits(total_mb=8192)
    check_onnx(dynamic, parse_options({"input_shape": [1, 3, 64, 64]}, limits), limits)
    for shape in ([1, 3, 6000, 6000], None):  # a memory bomb; a dynamic input without a shape
        try:
            check_onnx(dynamic, parse_options({"input_shape": shape}, limits), limits)
            raise AssertionError("{} passed".format(shape))
        except OptionError as e:
            assert e.field == "input_shape", e
    req = urllib.request.Request(server.url + "/v1/jobs/0123456789abcdef0123456789abcdef", method="DELETE")
    try:
        urllib.request.urlopen(req)
        raise AssertionError("DELETE of an unknown job passed")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    s = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
    s.sendall(b"POST /v1/profile HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: \xb2\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.0 400"), "superscript-two length"
    s.close()
finally:
    server.close()
print("ok")
"""


def test_agent_runs_on_python_3_6_like_a_tx2(tmp_path):
    """vermin checks the syntax; this runs the agent, the parser and the board bench on a real 3.6 interpreter."""
    python = python36()
    if python is None:
        pytest.skip("no Python 3.6 interpreter here (set EDGEPRUNE_PYTHON36=/path/to/python3.6 to run this)")
    root = Path(__file__).resolve().parents[2]
    model = tmp_path / "tiny.onnx"
    model.write_bytes(MODEL)
    (tmp_path / "dynamic.onnx").write_bytes(tiny_onnx(batch=1, size="S"))
    fixture = root / "tests" / "fixtures" / "device" / "tegrastats_tx2_l4t-r32-style_vddsys-rails_sudo.log"
    p = subprocess.run([python, "-c", PY36_CHECK, str(model), str(fixture), str(tmp_path / "state"),
                        str(tmp_path / "dynamic.onnx")], cwd=str(root),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout
    bench = subprocess.run([python, str(root / "benchmarks" / "board_bench.py"), str(tmp_path / "absent.onnx"),
                            "--runner", "onnxruntime", "--out", str(tmp_path / "bench")], cwd=str(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert bench.returncode == 1 and "no such file" in bench.stdout, bench.stdout


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "device"


def fake_trtexec(folder):
    """An executable that answers like trtexec 10.16 (the real log, --exportTimes and --exportProfile fixtures)
    and writes an engine where --saveEngine asks; each call's arguments go to calls.txt."""
    exe = folder / "trtexec"
    exe.write_text(
        "#!/bin/sh\n"
        "echo \"$@\" >> \"{calls}\"\n"
        "for a in \"$@\"; do case \"$a\" in\n"
        "  --exportTimes=*) cp \"{times}\" \"${{a#--exportTimes=}}\";;\n"
        "  --exportProfile=*) cp \"{profile}\" \"${{a#--exportProfile=}}\";;\n"
        "  --saveEngine=*) printf 'engine' > \"${{a#--saveEngine=}}\";;\n"
        "esac; done\n"
        "cat \"{log}\"\n".format(
            calls=folder / "calls.txt", log=FIXTURES / "trtexec_trt10.16_x86-rtx6000ada_onnx-build-and-bench.log",
            times=FIXTURES / "trtexec_exportTimes_trt8.4-era_rtx3090_resnet50-fp32_bs32.json",
            profile=FIXTURES / "trtexec_exportProfile_trt8.4-era_rtx3090_resnet50-fp32_bs32.json"))
    exe.chmod(0o755)
    return exe


def test_trtexec_backend_builds_once_then_reuses_the_cached_engine(tmp_path):
    """deploy.trtexec for real, against a fake trtexec binary (no TensorRT here)."""
    exe = fake_trtexec(tmp_path)
    server = serve("127.0.0.1", 0, state_dir=tmp_path / "state", trtexec=str(exe)).start()
    try:
        first = profile(server, backend="trtexec", precision="fp16", layers=True, warmup_ms=200)
        second = profile(server, backend="trtexec", precision="fp16", warmup_ms=200)
    finally:
        server.close()
    assert first["status"] == "done", first["error"]
    assert second["status"] == "done", second["error"]
    assert first["result"]["engine"]["cached"] is False and second["result"]["engine"]["cached"] is True
    assert first["result"]["engine"]["tensorrt"] == "10.16.0"
    latency = first["result"]["latency"]
    assert latency["info"]["runner"] == "trtexec" and latency["median_ms"] > 0 and latency["layers"]
    calls = [line for line in (tmp_path / "calls.txt").read_text().splitlines() if "--help" not in line]
    assert "--onnx=" in calls[0] and "--saveEngine=" in calls[0] and "--fp16" in calls[0]
    engine = second["result"]["engine"]["key"] + ".engine"
    assert "--loadEngine=" in calls[-1] and calls[-1].split("--loadEngine=")[1].split()[0].endswith(engine)
    assert not [p for p in (tmp_path / "state" / "engines").iterdir() if p.name.startswith(".")]


def test_trt_backend_caches_engines_and_reports_tensorrt_errors(tmp_path, monkeypatch):
    """The TensorRT Python API path, with deploy.trt_build / trt_run replaced by fakes (no TensorRT here)."""
    from types import SimpleNamespace

    from deploy import trt_build, trt_run
    from deploy.stats import LatencyStats
    from jetson import backends

    builds = []

    def build_engine(onnx_path, engine_path, precision="fp16", workspace_mb=1024, input_shape=None,
                     calib_source=None, calib_cache=None, timing_cache=None, dla_core=None):
        if precision == "fp32":
            raise trt_build.EngineBuildError("TensorRT 8.2.1.8 could not build an engine from " + onnx_path,
                                             ["[E] [TRT] ModelImporter.cpp:773: unsupported operator"])
        builds.append({"precision": precision, "calib": calib_source and os.path.exists(calib_source),
                       "timing_cache": timing_cache})
        with open(engine_path, "wb") as f:
            f.write(b"engine")
        return {"warnings": []}

    def time_engine(engine_path, warmup=10, runs=100, input_shape=None, stop=None, max_io_bytes=None):
        with open(engine_path, "rb") as f:
            assert f.read() == b"engine"
        return LatencyStats.from_samples([1.0, 1.5, 2.0] * runs, warmup=warmup, info={"runner": "tensorrt"})

    monkeypatch.setattr(backends, "cuda_from_python", lambda: "pycuda")
    monkeypatch.setattr(trt_build, "tensorrt_version", lambda: "8.2.1.8")
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: SimpleNamespace(__version__="8.2.1.8"))
    monkeypatch.setattr(trt_build, "build_engine", build_engine)
    monkeypatch.setattr(trt_run, "time_engine", time_engine)
    server = serve("127.0.0.1", 0, state_dir=tmp_path / "state").start()
    try:
        assert call(server, "GET", "/v1/device")[1]["backends"]["trt"] == {"available": True, "version": "8.2.1.8",
                                                                           "cuda": "pycuda"}
        jobs = [profile(server, backend="trt", precision=p) for p in ("fp16", "fp16", "int8", "fp32")]
    finally:
        server.close()
    fp16, again, int8, fp32 = jobs
    assert [j["status"] for j in jobs] == ["done", "done", "done", "failed"]
    assert fp16["result"]["engine"]["cached"] is False and fp16["result"]["engine"]["build_s"] >= 0
    assert again["result"]["engine"]["cached"] is True and again["result"]["engine"]["key"] == \
        fp16["result"]["engine"]["key"]
    assert int8["result"]["engine"]["key"] != fp16["result"]["engine"]["key"]
    assert int8["result"]["engine"]["calibration"].startswith("random")
    assert [b["precision"] for b in builds] == ["fp16", "int8"] and builds[1]["calib"] is True
    assert builds[0]["timing_cache"].endswith("timing-8.2.1.cache")
    assert "could not build" in fp32["error"]["message"] and fp32["error"]["type"] == "EngineBuildError"
    assert fp32["error"]["log"] == ["[E] [TRT] ModelImporter.cpp:773: unsupported operator"]
