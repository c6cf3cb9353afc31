"""Exec results and streamed exec processes."""
from __future__ import annotations

import queue
import signal as _signal
import threading
import time
from collections import deque
from typing import Any, Deque, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import grpc

from ._proto import sandbox_pb2 as pb
from .errors import (DeadlineExceededError, ExecError, HutchError, InvalidArgumentError,
                     UnknownError)


class ExecResult:
    """What a command did: its output (``stdout_text``/``stderr_text``,
    decoded as UTF-8, and raw ``stdout``/``stderr`` bytes) and how it ended.

    ``exit_code`` is the process's exit status, or -1 when it was killed by
    a signal (``signal`` says which). ``oom_killed``: killed for memory;
    ``timed_out``: killed at the exec's timeout; ``truncated``: output beyond
    ``max_output`` bytes was dropped."""

    __slots__ = ("stdout", "stderr", "stdout_text", "stderr_text", "exit_code", "signal",
                 "oom_killed", "timed_out", "truncated", "argv")

    def __init__(self, stdout: bytes = b"", stderr: bytes = b"", exit_code: int = 0,
                 signal: int = 0, oom_killed: bool = False, timed_out: bool = False,
                 truncated: bool = False, stdout_text: Optional[str] = None,
                 stderr_text: Optional[str] = None, argv: Tuple[str, ...] = ()) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.stdout_text = stdout_text if stdout_text is not None else stdout.decode("utf-8", "replace")
        self.stderr_text = stderr_text if stderr_text is not None else stderr.decode("utf-8", "replace")
        self.exit_code = exit_code
        self.signal = signal
        self.oom_killed = oom_killed
        self.timed_out = timed_out
        self.truncated = truncated
        self.argv = argv

    @classmethod
    def _from_pb(cls, rs: Sequence[Any], argv: Tuple[str, ...]) -> "ExecResult":
        """From Run's RunResponses: the output is the pieces concatenated,
        the status is the last message's."""
        last = rs[-1]
        return cls(stdout=b"".join(r.stdout for r in rs), stderr=b"".join(r.stderr for r in rs),
                   exit_code=last.exit_code, signal=last.signal, oom_killed=last.oom_killed,
                   timed_out=last.timed_out, truncated=last.truncated,
                   stdout_text="".join(r.stdout_text for r in rs),
                   stderr_text="".join(r.stderr_text for r in rs), argv=argv)

    @property
    def returncode(self) -> int:
        """Like subprocess: the exit code, or -N when killed by signal N."""
        return -self.signal if self.signal else self.exit_code

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.signal

    def check(self) -> "ExecResult":
        """Returns self if the command succeeded, else raises ExecError."""
        if not self.ok:
            raise ExecError("%s %s (stderr: %s)" % (
                " ".join(self.argv) or "command", _how(self.exit_code, self.signal, self.oom_killed,
                                                        self.timed_out),
                self.stderr_text.strip()[-500:] or "empty"), self)
        return self

    def __repr__(self) -> str:
        return "ExecResult(exit_code=%d%s, stdout_text=%r, stderr_text=%r)" % (
            self.exit_code, ", signal=%d" % self.signal if self.signal else "",
            _clip(self.stdout_text), _clip(self.stderr_text))


def _clip(s: str, n: int = 200) -> str:
    return s if len(s) <= n else s[:n] + "..."


def _how(code: int, sig: int, oom: bool, timed_out: bool) -> str:
    if oom:
        return "was killed: out of memory"
    if timed_out:
        return "timed out"
    if sig:
        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return "was killed by %s" % name
    return "exited with %d" % code


class ExitStatus(NamedTuple):
    """How a streamed exec ended."""
    exit_code: int          # -1 when killed by a signal
    signal: int = 0
    oom_killed: bool = False
    timed_out: bool = False

    @property
    def returncode(self) -> int:
        return -self.signal if self.signal else self.exit_code

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.signal


class Output(NamedTuple):
    """One chunk of output as produced: ``stream`` is "stdout" or "stderr"."""
    stream: str
    data: bytes


_END = object()


def _request_iter(q: "queue.Queue[Any]") -> Iterator[Any]:
    while True:
        m = q.get()
        if m is _END:
            return
        yield m


class OutputStream:
    """One of a process's output streams. Iterate it for chunks (bytes) as
    they are produced, or ``read()`` everything up to the exit."""

    def __init__(self, proc: "ExecProcess", name: str) -> None:
        self._proc = proc
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._proc._take(self.name)
            if chunk is None:
                return
            yield chunk.data

    def read(self) -> bytes:
        return b"".join(self)

    def read_text(self, encoding: str = "utf-8", errors: str = "replace") -> str:
        return self.read().decode(encoding, errors)

    def iter_lines(self, encoding: str = "utf-8") -> Iterator[str]:
        """Lines (without the newline) as they complete."""
        pending = b""
        for chunk in self:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(encoding, "replace")
        if pending:
            yield pending.decode(encoding, "replace")


class ExecProcess:
    """A command running in a sandbox over one Exec stream.

    * ``for out in proc:`` yields :class:`Output` chunks (stream, data) in
      the order produced; ``proc.stdout`` / ``proc.stderr`` give one stream
      each (the other one's chunks are kept until read);
    * ``write()`` / ``close_stdin()`` feed stdin (start with ``stdin=True``);
    * ``signal()``, ``terminate()``, ``kill()``, ``resize()``;
    * ``wait()`` returns the :class:`ExitStatus` (output not read by then is
      kept and can still be read).

    Used as a context manager, leaving the block ends the exec (hutchd kills
    the process when its stream is cancelled)."""

    def __init__(self, conn: Any, start: Any) -> None:
        self.argv: Tuple[str, ...] = tuple(start.argv)
        self._stdin_open = bool(start.stdin)
        self._requests: "queue.Queue[Any]" = queue.Queue(maxsize=64)
        self._requests.put(pb.ExecRequest(start=start))
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: Deque[Output] = deque()
        self._pulling = False
        self._done = False
        self._exit: Optional[ExitStatus] = None
        self._error: Optional[HutchError] = None
        self._drainer: Optional[threading.Thread] = None
        self._conn = conn
        # The request iterator must not refer to self: grpcio's thread holds
        # it, and a dropped process must be collectable (which cancels the
        # call, and hutchd then kills the process).
        self._call = conn.stream_stream("Sandboxes/Exec", _request_iter(self._requests),
                                        pb.ExecResponse)
        # The first answer is `started` (or the error that kept it from
        # starting: unknown sandbox, bad argv, ...).
        self.id = ""
        self._pull_one(first=True)
        with self._lock:
            if self._error is not None and not self.id:
                raise self._error

    def __del__(self) -> None:
        try:
            if not self._done:
                self._call.cancel()
                self._end_requests()
        except Exception:
            pass

    # ---- requests ----

    def _send(self, msg: Any) -> None:
        while True:
            if self._done:
                raise self._error or InvalidArgumentError("the process has exited")
            try:
                self._requests.put(msg, timeout=0.2)
                return
            except queue.Full:
                continue

    def _end_requests(self) -> None:
        while True:
            try:
                self._requests.put_nowait(_END)
                return
            except queue.Full:
                try:
                    self._requests.get_nowait()
                except queue.Empty:
                    pass

    def write(self, data: Union[bytes, str]) -> None:
        """Sends data to the process's stdin (blocks while hutchd's window
        towards the sandbox is full)."""
        if not self._stdin_open:
            raise InvalidArgumentError("stdin is closed (start with stdin=True to write to it)")
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), 1 << 20):
            self._send(pb.ExecRequest(stdin=data[i:i + (1 << 20)]))

    def close_stdin(self) -> None:
        """End of input for the process."""
        if self._stdin_open:
            self._stdin_open = False
            if not self._done:
                self._send(pb.ExecRequest(close_stdin=True))

    def signal(self, sig: Union[int, _signal.Signals]) -> None:
        """Sends a signal to the process."""
        self._send(pb.ExecRequest(signal=int(sig)))

    def terminate(self) -> None:
        self.signal(_signal.SIGTERM)

    def kill(self) -> None:
        self.signal(_signal.SIGKILL)

    def resize(self, rows: int, cols: int) -> None:
        """The terminal's new size (tty execs)."""
        self._send(pb.ExecRequest(resize=pb.WindowSize(rows=rows, cols=cols)))

    # ---- responses ----

    def _pull_one(self, first: bool = False) -> None:
        """Reads one message from the stream (the caller is the only puller)."""
        try:
            msg = next(self._call)
        except StopIteration:
            with self._lock:
                if self._exit is None and self._error is None:
                    self._error = UnknownError("exec %s ended without an exit status" % (
                        " ".join(self.argv)))
                self._finish_locked()
            return
        except grpc.RpcError as e:
            err = self._conn._error(e)
            with self._lock:
                if self._error is None and not (self._exit is not None and
                                                 e.code() == grpc.StatusCode.CANCELLED):
                    self._error = err
                self._finish_locked()
            return
        with self._lock:
            kind = msg.WhichOneof("msg")
            if kind == "started":
                self.id = msg.started
            elif kind == "stdout":
                self._pending.append(Output("stdout", bytes(msg.stdout)))
            elif kind == "stderr":
                self._pending.append(Output("stderr", bytes(msg.stderr)))
            elif kind == "exit":
                x = msg.exit
                self._exit = ExitStatus(x.exit_code, x.signal, x.oom_killed, x.timed_out)
            self._cond.notify_all()

    def _finish_locked(self) -> None:
        if not self._done:
            self._done = True
            self._end_requests()
        self._cond.notify_all()

    def _take(self, stream: Optional[str]) -> Optional[Output]:
        """The next chunk of `stream` (None: any), pulling as needed; None
        at the end. Raises the stream's error once the data before it is
        consumed."""
        while True:
            with self._lock:
                while True:
                    for i, o in enumerate(self._pending):
                        if stream is None or o.stream == stream:
                            del self._pending[i]
                            return o
                    if self._done:
                        if self._error is not None:
                            raise self._error
                        return None
                    if not self._pulling:
                        self._pulling = True
                        break
                    self._cond.wait()
            try:
                self._pull_one()
            finally:
                with self._lock:
                    self._pulling = False
                    self._cond.notify_all()

    def __iter__(self) -> Iterator[Output]:
        while True:
            o = self._take(None)
            if o is None:
                return
            yield o

    @property
    def stdout(self) -> OutputStream:
        return OutputStream(self, "stdout")

    @property
    def stderr(self) -> OutputStream:
        return OutputStream(self, "stderr")

    def _drain(self) -> None:
        while True:
            with self._lock:
                while self._pulling and not self._done:
                    self._cond.wait()
                if self._done:
                    return
                self._pulling = True
            try:
                self._pull_one()
            finally:
                with self._lock:
                    self._pulling = False
                    self._cond.notify_all()

    def wait(self, timeout: Optional[float] = None) -> ExitStatus:
        """Waits for the exit and returns its status. Output not read yet is
        kept. Raises DeadlineExceededError after `timeout` seconds (the
        process runs on), or the stream's error (e.g. UnavailableError when
        the sandbox stopped under it)."""
        if timeout is None:
            self._drain()
        else:
            with self._lock:
                if self._drainer is None and not self._done:
                    self._drainer = threading.Thread(target=self._drain, daemon=True,
                                                     name="hutch-exec-wait")
                    self._drainer.start()
                deadline = time.monotonic() + timeout
                while not self._done:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise DeadlineExceededError("%s still running after %gs" % (
                            " ".join(self.argv), timeout))
                    self._cond.wait(left)
        with self._lock:
            if self._exit is None:
                raise self._error or UnknownError("exec ended without an exit status")
            return self._exit

    def communicate(self, input: Union[bytes, str, None] = None,
                    timeout: Optional[float] = None) -> Tuple[bytes, bytes]:
        """Writes input (if any), closes stdin, waits; returns (stdout,
        stderr) not read before."""
        if input is not None:
            self.write(input)
        self.close_stdin()
        self.wait(timeout)
        out: List[bytes] = []
        err: List[bytes] = []
        with self._lock:
            for o in self._pending:
                (out if o.stream == "stdout" else err).append(o.data)
            self._pending.clear()
        return b"".join(out), b"".join(err)

    @property
    def exit_status(self) -> Optional[ExitStatus]:
        """The exit status once known (without waiting)."""
        return self._exit

    @property
    def returncode(self) -> Optional[int]:
        return self._exit.returncode if self._exit else None

    def close(self) -> None:
        """Ends the exec: a process still running is killed."""
        if not self._done:
            self._call.cancel()
            with self._lock:
                self._finish_locked()
        self._stdin_open = False

    def __enter__(self) -> "ExecProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<ExecProcess %s %r %s>" % (self.id, " ".join(self.argv),
                                           "exit=%d" % self._exit.exit_code if self._exit
                                           else "running")
