"""A 10-minute soak of the agent (slow): 16 clients on 127.0.0.1 send a mix of good and bad traffic to an agent in
its own process. Every good job must finish, the agent's memory must stay bounded, and no job or result file may
be lost or corrupt, also after a kill -9 and a restart. EDGEPRUNE_SOAK_S sets the duration (600 s by default);
the figures are printed and written to soak.json in the test's folder (docs/jetson.md quotes a run)."""

import base64
import json
import os
import random
import socket
import threading
import time
from collections import Counter

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from jetson_helpers import FAST, MODEL, SubprocessAgent, call, call_full, raw_request, tiny_onnx  # noqa: E402

pytestmark = pytest.mark.slow
CLIENTS = 16
GOOD = dict(FAST)
BOMB = tiny_onnx(batch=1, size="S")
HEAD = "POST /v1/profile HTTP/1.0\r\nContent-Type: application/json"
TX2_LIMITS = ("--keep-jobs", 1000000, "--max-input-mb", 256, "--max-tensor-mb", 512)  # an 8 GB board's defaults


class Soak(object):
    def __init__(self, agent, seconds):
        self.agent, self.port = agent, agent.port
        self.deadline = time.monotonic() + seconds
        self.counts, self.lock = Counter(), threading.Lock()
        self.good, self.cancelled, self.limited = [], [], []  # job ids by what they must end as
        self.errors = []  # anything a correct agent would not do (500s, a crash, a wrong status)
        self.memory = []  # (seconds since start, RSS MB)

    def count(self, key, job=None, into=None):
        with self.lock:
            self.counts[key] += 1
            if job and into is not None:
                into.append(job)

    def bad(self, what):
        with self.lock:
            self.errors.append(what)

    # ---- the traffic
    def submit(self, options, model=MODEL, into=None, key="good"):
        """POST a job; `into` (a list) for a job that must be accepted, None for one that must be refused."""
        body = {"onnx": base64.b64encode(model).decode(), "name": "soak.onnx", "options": options}
        status, reply, headers = call_full(self.port, "POST", "/v1/profile", body, timeout=60)
        if status in (429, 503):  # busy: back off as the Retry-After says
            self.count(str(status))
            time.sleep(min(float(headers.get("Retry-After", 1)), 5.0) * random.random())
        elif status == 202 and into is not None:
            self.count(key + " accepted", reply["job"], into)
            return reply["job"]
        elif status == 400 and into is None:
            self.count(key + " refused")
        else:
            self.bad("{} answered {}: {}".format(key, status, reply))
        return None

    def cancel_one(self):
        job = self.submit(dict(GOOD, iterations=200000, warmup=0), into=self.cancelled, key="to cancel")
        if job:
            time.sleep(random.uniform(0.1, 1.5))
            status = call(self.port, "DELETE", "/v1/jobs/" + job)[0]
            self.count("DELETE {}".format(status))
            if status not in (200, 202, 409):
                self.bad("DELETE answered {}".format(status))

    def malformed(self):
        cases = [(HEAD + "\r\nContent-Length: 11", b'{"onnx": 1,'), (HEAD + "\r\nContent-Length: \xb2", b""),
                 (HEAD + "\r\nContent-Length: 200001", b"x"), (HEAD + "\r\nX-No-Length: 1", b"{}")]
        deep = b'{"options": ' + b"[" * 50000 + b"]" * 50000 + b"}"
        cases.append((HEAD + "\r\nContent-Length: {}".format(len(deep)), deep))
        head, body = random.choice(cases)
        status, text = raw_request(self.port, head, body, timeout=30)
        self.count("malformed {}".format(status))
        if status is not None and (status >= 500 and status != 503 or status < 400):
            self.bad("malformed request answered {}".format(status))

    def bad_model(self):
        model = random.choice([MODEL[:len(MODEL) // 2], b"not an onnx file" * 8, MODEL[:-7]])
        self.submit(GOOD, model=model, key="bad model")

    def bomb(self):
        self.submit(dict(GOOD, input_shape=[1, 3, 6000, 6000]), model=BOMB, key="bomb")

    def slow_or_abandoned(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall((HEAD + "\r\nContent-Length: 20000\r\n\r\n").encode() + b'{"onnx": "')
            if random.random() < 0.5:
                time.sleep(random.uniform(0.1, 2.0))  # gives up: the agent must not make a job of it
                self.count("abandoned upload")
            else:
                s.settimeout(30)
                self.count("stalled upload {}".format(s.recv(64)[9:12].decode() or "closed"))

    def garbage(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(bytes(random.getrandbits(8) for _ in range(random.randint(1, 300))))
        self.count("garbage")

    def look(self):
        status = call(self.port, "GET", random.choice(["/v1/device", "/v1/jobs"]), timeout=60)[0]
        self.count("GET {}".format(status))
        if status != 200:
            self.bad("GET answered {}".format(status))

    def client(self, seed):
        random.seed(seed)
        actions = ([lambda: self.submit(GOOD, into=self.good)] * 6 + [self.cancel_one, self.malformed] * 2
                   + [self.bad_model, self.bomb, self.slow_or_abandoned, self.garbage, self.look, self.look,
                      lambda: self.submit(dict(GOOD, iterations=1000000, warmup=0, time_limit_s=0.5),
                                          into=self.limited, key="time-limited")])
        while time.monotonic() < self.deadline:
            try:
                random.choice(actions)()
            except OSError as e:  # a connection the agent closed or refused: counted, then the next request
                self.count("client {}".format(type(e).__name__))
            time.sleep(random.uniform(0.0, 0.3))

    def monitor(self, start):
        while time.monotonic() < self.deadline:
            self.memory.append((round(time.monotonic() - start), round(self.agent.rss_mb(), 1)))
            if self.agent.proc.poll() is not None:
                self.bad("the agent exited with {}".format(self.agent.proc.returncode))
                return
            time.sleep(5)


def wait_all(port, ids, timeout):
    deadline, records = time.monotonic() + timeout, {}
    for job in ids:
        while time.monotonic() < deadline:
            rec = call(port, "GET", "/v1/jobs/" + job, timeout=60)[1]
            if rec.get("status") in ("done", "failed", "cancelled"):
                records[job] = rec
                break
            time.sleep(0.2)
    return records


def check_files(state, expected):
    """Every job file parses and holds its id; every expected job has one, equal to what the agent serves."""
    on_disk = {}
    for name in os.listdir(str(state / "jobs")):
        with open(str(state / "jobs" / name)) as f:
            rec = json.load(f)  # a corrupt file fails here
        assert name == rec["id"] + ".json"
        on_disk[rec["id"]] = rec
    missing = [j for j in expected if j not in on_disk]
    assert not missing, "{} job files lost".format(len(missing))
    return on_disk


def test_sixteen_clients_of_good_and_bad_traffic_for_ten_minutes(tmp_path):
    seconds = float(os.environ.get("EDGEPRUNE_SOAK_S", "600"))
    state = tmp_path / "state"
    with SubprocessAgent(state, *TX2_LIMITS) as agent:
        soak, start = Soak(agent, seconds), time.monotonic()
        threads = [threading.Thread(target=soak.client, args=(k,)) for k in range(CLIENTS)]
        threads.append(threading.Thread(target=soak.monitor, args=(start,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        assert not any(t.is_alive() for t in threads), "a client hung"
        good = wait_all(agent.port, soak.good, 300)
        cancelled = wait_all(agent.port, soak.cancelled, 120)
        limited = wait_all(agent.port, soak.limited, 120)
        peak_mb = agent.peak_mb()
        served = dict((j["id"], j) for j in call(agent.port, "GET", "/v1/jobs", timeout=60)[1]["jobs"])
        on_disk = check_files(state, soak.good + soak.cancelled + soak.limited)
        agent.stop(kill=True)  # kill -9: nothing finished may be lost
    with SubprocessAgent(state, *TX2_LIMITS) as again:
        after = wait_all(again.port, list(good), 60)
    rss = [m for _t, m in soak.memory]
    settled = [m for t, m in soak.memory if t >= 60] or rss
    figures = {"seconds": seconds, "clients": CLIENTS, "requests": dict(soak.counts), "errors": soak.errors[:20],
               "good_jobs": len(soak.good), "good_done": sum(r["status"] == "done" for r in good.values()),
               "cancel_targets": len(soak.cancelled),
               "cancelled": sum(r["status"] == "cancelled" for r in cancelled.values()),
               "time_limited": len(soak.limited),
               "time_limit_failed": sum(r["error"] and r["error"].get("type") == "TimeLimitExceeded"
                                        for r in limited.values()),
               "jobs_on_disk": len(on_disk), "rss_mb_first": rss[0], "rss_mb_max": max(rss),
               "rss_mb_after_60s_min": min(settled), "rss_mb_after_60s_max": max(settled), "rss_mb_last": rss[-1],
               "peak_mb": peak_mb, "memory_samples": soak.memory}
    (tmp_path / "soak.json").write_text(json.dumps(figures, indent=1))
    print("\nsoak figures:", json.dumps(dict((k, v) for k, v in figures.items() if k != "memory_samples")))
    assert not soak.errors, soak.errors[:10]
    assert figures["good_done"] == len(soak.good) == len(good) > 0, "not every good job finished"
    assert all(r["status"] in ("cancelled", "done") for r in cancelled.values())
    assert figures["time_limit_failed"] == len(soak.limited)
    assert max(settled) - min(settled) < 128, "the agent's memory grew by {:.0f} MB".format(max(settled) - min(settled))
    assert all(after[j] == good[j] for j in good), "a finished result changed after kill -9 and a restart"
    assert set(served) == set(on_disk)
    assert len(on_disk) == len(soak.good) + len(soak.cancelled) + len(soak.limited), "a job nobody was told of"
