"""Streamed exec through the SDK: output as produced, stdin write/close,
signals, resize, wait, and what happens when the sandbox goes away."""
import signal
import threading
import time

import pytest

import hutch
from hutch import DeadlineExceededError, InvalidArgumentError, NotFoundError, UnavailableError


def test_output_arrives_as_produced_in_order(client):
    sb = client.create()
    t0 = time.time()
    seen = []
    # (stdout and stderr are two pipes: only output apart in time has an order)
    with sb.exec_stream("sh", "-c", "echo one; sleep 2; echo two >&2; sleep 0.5; echo three") as p:
        assert p.id
        for out in p:
            seen.append((out.stream, out.data, time.time() - t0))
        st = p.wait()
    assert [(s, d) for s, d, _ in seen] == [("stdout", b"one\n"), ("stderr", b"two\n"),
                                          ("stdout", b"three\n")]
    assert seen[0][2] < 1.5, "the first chunk came before the command ended"
    assert st.exit_code == 0 and st.ok and p.returncode == 0
    assert p.exit_status == st


def test_stdin_write_and_close_and_exit_code(client):
    sb = client.create()
    p = sb.exec_stream("sh", "-c", "while read l; do echo got:$l; done; echo eof >&2; exit 7",
                       stdin=True)
    lines = p.stdout.iter_lines()
    p.write("a\n")
    assert next(lines) == "got:a"
    p.write(b"b\n")
    assert next(lines) == "got:b"
    p.close_stdin()
    assert list(lines) == []
    assert p.stderr.read() == b"eof\n"
    st = p.wait()
    assert st.exit_code == 7 and not st.ok
    with pytest.raises(InvalidArgumentError):
        p.write("late")
    # Without stdin=True the process sees EOF at once, and writing is refused.
    q = sb.exec_stream("cat")
    with pytest.raises(InvalidArgumentError):
        q.write("x")
    assert q.wait().exit_code == 0
    # communicate(): input, EOF, all output.
    r = sb.exec_stream("sh", "-c", "wc -c; echo e >&2", stdin=True)
    out, err = r.communicate(b"12345")
    assert out.strip() == b"5" and err == b"e\n"
    # Large input passes through intact (flow control, no loss).
    big = bytes(range(256)) * 4096 * 4  # 4 MiB
    r = sb.exec_stream("sha256sum", stdin=True)
    out, _ = r.communicate(big)
    import hashlib
    assert out.split()[0].decode() == hashlib.sha256(big).hexdigest()


def test_signals_terminate_kill_and_wait_timeout(client):
    sb = client.create()
    p = sb.exec_stream("sleep", "100")
    with pytest.raises(DeadlineExceededError):
        p.wait(timeout=0.5)
    assert p.exit_status is None
    p.terminate()
    st = p.wait(timeout=30)
    assert st.signal == signal.SIGTERM and st.exit_code == -1 and st.returncode == -15
    # A handler in the process sees the signal, and the exit code is its own.
    p = sb.exec_stream("sh", "-c", "trap 'echo caught USR1; exit 3' USR1; echo ready; "
                       "while :; do sleep 0.1; done")
    assert next(iter(p.stdout)) == b"ready\n"
    p.signal(signal.SIGUSR1)
    assert p.stdout.read() == b"caught USR1\n"
    assert p.wait().exit_code == 3
    p = sb.exec_stream("sleep", "100")
    p.kill()
    assert p.wait(30).signal == signal.SIGKILL
    # An exec timeout kills the process and says so.
    p = sb.exec_stream("sleep", "100", timeout="1s")
    assert p.wait(30).timed_out


def test_tty_and_resize(client):
    sb = client.create()
    p = sb.exec_stream("sh", "-c", "stty size; read x; stty size", tty=True, rows=24, cols=80,
                       stdin=True)
    lines = p.stdout.iter_lines()
    assert next(lines).strip() == "24 80"
    p.resize(40, 132)
    time.sleep(0.3)
    p.write("\n")
    rest = [l.strip() for l in lines if l.strip()]
    assert rest[-1] == "40 132", rest
    assert p.wait().exit_code == 0
    # With a tty, stderr arrives on stdout.
    p = sb.exec_stream("sh", "-c", "echo to-err >&2", tty=True)
    assert b"to-err" in p.stdout.read()
    assert p.wait().ok


def test_two_readers_and_many_execs_at_once(client):
    sb = client.create()
    p = sb.exec_stream("sh", "-c", "for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.2; done")
    got = {}

    def read(name):
        got[name] = getattr(p, name).read()

    ts = [threading.Thread(target=read, args=(n,)) for n in ("stdout", "stderr")]
    [t.start() for t in ts]
    [t.join(30) for t in ts]
    assert got == {"stdout": b"o1\no2\no3\n", "stderr": b"e1\ne2\ne3\n"}
    assert p.wait().ok
    procs = [sb.exec_stream("sh", "-c", "sleep 1; echo %d" % i) for i in range(6)]
    t0 = time.time()
    assert [q.stdout.read() for q in procs] == [b"%d\n" % i for i in range(6)]
    assert time.time() - t0 < 6, "they ran side by side"


def test_closing_the_stream_kills_the_process(client):
    sb = client.create()
    with sb.exec_stream("sh", "-c", "echo started; exec sleep 1000") as p:
        assert next(iter(p.stdout)) == b"started\n"
    time.sleep(1)
    assert "sleep 1000" not in sb.exec("ps", "-o", "args").stdout_text


def test_sandbox_stopping_under_an_exec_ends_it_with_the_reason(client):
    sb = client.create()
    p = sb.exec_stream("sh", "-c", "echo up; sleep 100")
    assert next(iter(p.stdout)) == b"up\n"
    sb.stop()
    with pytest.raises(UnavailableError) as e:
        p.wait(30)
    assert "stop" in str(e.value)
    with pytest.raises(UnavailableError):
        p.stdout.read()
    # Starting an exec in a sandbox that does not exist fails at once.
    ghost = hutch.Sandbox(client, type(sb.info)(id="sb-000000000000"))
    with pytest.raises(NotFoundError) as e:
        ghost.exec_stream("true")
    assert "not found" in str(e.value)
