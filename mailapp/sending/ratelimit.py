"""The global send rate per SMTP relay: a token bucket in Redis shared by every worker when REDIS_URL
is set, or, on the embedded default, a bucket in a small file under the instance folder, shared by the
processes of this machine (a worker's prefork children, and any other worker started there).

Each message reserves one token before it is sent. The bucket may go negative: a reservation then
tells the caller how long to wait, so waiting workers are served in order and the rate over any window
of W seconds stays within rate * W + burst."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import time
from functools import cache
from pathlib import Path

from flask import current_app

# KEYS[1] the bucket; ARGV: rate (tokens/s), burst (tokens), tokens wanted. Returns the seconds (as a
# string, Lua numbers lose precision otherwise) the caller must wait before using its tokens. Time comes
# from the Redis server, so workers on machines with skewed clocks share one timeline.
_RESERVE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate) - wanted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
if tokens >= 0 then
  return '0'
end
return tostring(-tokens / rate)
"""


class FileBucket:
    """The same reservation bucket, kept in a file that each reservation reads and rewrites under an
    exclusive lock (flock), so every process and thread on the machine draws from one bucket. The file
    is opened for each reservation: a lock belongs to an open file, and an open file inherited through
    fork would let parent and child hold the lock at once."""

    def __init__(self, path: Path, rate: float, burst: float) -> None:
        self.path = path
        self.rate = rate
        self.burst = burst
        path.parent.mkdir(parents=True, exist_ok=True)

    def reserve(self, wanted: float = 1) -> float:
        with self.path.open("a+b") as state:
            fcntl.flock(state, fcntl.LOCK_EX)
            state.seek(0)
            saved = state.read().split()
            # CLOCK_MONOTONIC is one clock for every process of the machine.
            now = time.monotonic()
            tokens, at = (float(saved[0]), float(saved[1])) if len(saved) == 2 else (self.burst, now)
            tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate) - wanted
            state.seek(0)
            state.truncate()
            state.write(f"{tokens!r} {now!r}".encode("ascii"))
        return 0.0 if tokens >= 0 else -tokens / self.rate


class RedisBucket:
    def __init__(self, url: str, key: str, rate: float, burst: float) -> None:
        self.key = key
        self.rate = rate
        self.burst = burst
        self.script = _redis_client(url).register_script(_RESERVE_SCRIPT)

    def reserve(self, wanted: float = 1) -> float:
        return float(self.script(keys=[self.key], args=[self.rate, self.burst, wanted]))


@cache
def _redis_client(url: str):  # redis.Redis
    import redis

    return redis.Redis.from_url(url)


class RateLimiter:
    """Waits as needed before each message so the relay sees at most MAIL_RATE_LIMIT messages/s."""

    def __init__(self, rate: float, relay: str, redis_url: str = "", state_dir: str | Path | None = None
                 ) -> None:
        self.rate = rate
        # A burst of a tenth of a second's worth (at least one message) keeps the rate smooth.
        burst = max(1.0, rate / 10)
        if rate <= 0:
            self.bucket = None
        elif redis_url:
            self.bucket = RedisBucket(redis_url, f"mailapp:send-rate:{relay}", rate, burst)
        else:
            name = hashlib.sha256(f"{relay} {rate}".encode()).hexdigest()[:16]
            folder = Path(state_dir) if state_dir is not None else Path(tempfile.gettempdir())
            self.bucket = FileBucket(folder / f"send-rate-{name}.bucket", rate, burst)

    @classmethod
    def for_app(cls) -> RateLimiter:
        config = current_app.config
        relay = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}"
        return cls(
            float(config.get("MAIL_RATE_LIMIT") or 0), relay, config.get("REDIS_URL") or "",
            state_dir=current_app.instance_path,
        )

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    def wait(self) -> None:
        if self.bucket is None:
            return
        delay = self.bucket.reserve(1)
        if delay > 0:
            time.sleep(delay)
