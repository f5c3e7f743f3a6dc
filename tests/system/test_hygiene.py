"""The leak checks themselves: a test that leaks a thread, a task or a socket must fail."""

from __future__ import annotations

import pytest
from harness import TESTS

LEAKY = '''
import asyncio, socket, threading, time

def test_thread():
    threading.Thread(target=time.sleep, args=(30,), name="forgotten", daemon=True).start()

def test_task():
    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten-task")
    asyncio.run(main())

KEEP = []
def test_socket():
    KEEP.append(socket.socket())

def test_clean():
    t = threading.Thread(target=time.sleep, args=(0.01,))
    t.start()
    t.join()
'''


def test_leaks_fail_the_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "hygiene", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=3)
    out = result.stdout.str()
    assert "threads left running: ['forgotten']" in out
    assert "asyncio tasks still pending when their loop ended" in out and "forgotten-task" in out
    assert "1 socket(s) left open" in out
