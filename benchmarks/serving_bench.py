"""REST serving benchmark: requests/s and latency of ``flowlearn.io.serving`` under 32 concurrent clients.

The goals (2 cores, load generator on the same machine): the iris DNN >= 2,000 requests/s with p50 <= 5 ms
from 32 concurrent clients; the MNIST CNN >= 400 requests/s.

The server runs in its own process (uvicorn, one event loop, as ``flowlearn serve`` runs it) on a loopback port;
the load generator is this process: 32 threads, each with one keep-alive connection (a minimal HTTP/1.1 client,
see :class:`RawClient`), each sending single-example ``:predict`` requests (``{"instances": [row]}``) and reading
every answer. Two measurements per model:

- *closed loop*: each client sends its next request as soon as the previous answer arrives, for ``--seconds``:
  the most requests/s the server sustains, and the latency at that load;
- *paced*: the 32 clients together send at a fixed rate (``--rate``, default the goal's 2,000/s for the DNN, 400/s
  for the CNN), each on its own schedule; latency counts from the scheduled send time, so a server that falls
  behind pays for the queue it builds (no coordinated omission).

With 32 clients that always wait for their answer, requests/s x mean latency = 32 (Little's law): 2,000 requests/s
in a closed loop means a mean latency of 16 ms, so the p50 goal of 5 ms is met, if at all, at the paced rate.

Run: ``python benchmarks/serving_bench.py`` (about a minute); ``--seconds 3`` for a rough run.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, mnist  # noqa: E402

CLIENTS = 32
_SERVER = """
import socket, sys, uvicorn
from flowlearn.io.serving import create_app
sock = socket.socket(fileno=int(sys.argv[3]))
options = dict(max_batch_size=int(sys.argv[4]), batch_timeout_ms=float(sys.argv[5]))
app = create_app(sys.argv[1], sys.argv[2], **options)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
"""


def export_models(root):
    """Export the iris DNN and the MNIST CNN (the worked examples' architecture); return (name, base, bodies)."""
    from sklearn.datasets import load_iris

    from flowlearn.estimators import CNNClassifier, DNNClassifier
    from flowlearn.io import export_saved_model

    x, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dnn = DNNClassifier(hidden_units=(10, 10), epochs=50, random_state=0).fit(x, y)
        x_train, y_train, x_test, _ = mnist()
        cnn = CNNClassifier(epochs=1, random_state=0).fit(x_train[:1000], y_train[:1000])
    models = []
    for name, model, rows in (("iris", dnn, x), ("mnist", cnn, x_test[:64])):
        base = os.path.join(root, name)
        export_saved_model(model, base)
        bodies = [json.dumps({"instances": [row.tolist()]}).encode() for row in rows]
        models.append((name, base, bodies))
    return models


def start_server(base, name, max_batch_size, batch_timeout_ms):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, base, name, str(sock.fileno()), str(max_batch_size), str(batch_timeout_ms)],
        pass_fds=[sock.fileno()],
    )
    sock.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/v1/models/{name}")
            if conn.getresponse().status == 200:
                conn.close()
                return process, port
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the server did not start")
        time.sleep(0.1)


class RawClient:
    """A minimal keep-alive HTTP/1.1 client: prebuilt request bytes out, status and body in.

    http.client parses every response's headers with the email package, which costs the load generator more CPU
    per request than the server spends on a small model; on 2 shared cores that would measure the client.
    """

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request):
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self):
        self.sock.close()


def _request_bytes(path, body):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def load(port, name, bodies, seconds, rate=None):
    """Run 32 clients for ``seconds``; closed loop, or paced at ``rate`` requests/s in all."""
    path = f"/v1/models/{name}:predict"
    requests = [_request_bytes(path, body) for body in bodies]
    latencies, errors, lock = [], [], threading.Lock()
    finished = []
    start = time.perf_counter() + 0.2  # every client connected first
    stop = start + seconds

    def client(k):
        conn = RawClient(port)
        mine, n = [], 0
        interval = CLIENTS / rate if rate else 0.0
        scheduled = start + (k / CLIENTS) * interval  # the paced clients' sends are spread evenly
        time.sleep(max(0.0, start - time.perf_counter()))
        while True:
            now = time.perf_counter()
            if rate:
                if scheduled >= stop:
                    break
                if scheduled > now:
                    time.sleep(scheduled - now)
                begin = scheduled
                scheduled += interval
            else:
                if now >= stop:
                    break
                begin = now
            try:
                status, _ = conn.exchange(requests[(k + n * CLIENTS) % len(requests)])
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                mine.append(time.perf_counter() - begin)
            except Exception as error:
                with lock:
                    errors.append(repr(error))
                conn.close()
                conn = RawClient(port)
            n += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            finished.append(time.perf_counter())

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    count = len(latencies)
    # Paced clients that fell behind finish after `stop`: the rate is over the time they really took.
    elapsed = max(finished) - start
    return {
        "requests_per_s": count / elapsed,
        "p50_ms": 1000 * latencies[count // 2] if count else None,
        "p99_ms": 1000 * latencies[min(count - 1, int(count * 0.99))] if count else None,
        "mean_ms": 1000 * statistics.fmean(latencies) if count else None,
        "requests": count,
        "errors": len(errors),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout-ms", type=float, default=0.0)
    parser.add_argument("--models", default="iris,mnist")
    args = parser.parse_args()
    goals = {"iris": 2000, "mnist": 400}
    print(machine_line())
    print(f"{CLIENTS} clients, {args.seconds:g} s per measurement, max_batch_size {args.max_batch_size}, "
          f"batch_timeout_ms {args.batch_timeout_ms:g}")
    root = tempfile.mkdtemp(prefix="serving-bench-")
    try:
        for name, base, bodies in export_models(root):
            if name not in args.models.split(","):
                continue
            process, port = start_server(base, name, args.max_batch_size, args.batch_timeout_ms)
            try:
                load(port, name, bodies, 1.0)  # warm-up: first-touch allocations, lazy uploads
                for label, rate in (("closed loop", None), (f"paced {goals[name]}/s", goals[name])):
                    result = load(port, name, bodies, args.seconds, rate)
                    print(f"{name:5s} {label:14s} {result['requests_per_s']:7.0f} requests/s  p50 "
                          f"{result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  mean {result['mean_ms']:6.2f}"
                          f" ms  errors {result['errors']}  (goal {goals[name]} requests/s"
                          f"{', p50 <= 5 ms' if name == 'iris' else ''})")
            finally:
                process.terminate()
                process.wait(20)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
