"""Hourly and daily caps per relay, counted across every worker and machine: in Redis when REDIS_URL is
set (one counter per relay and UTC hour or day, with an expiry), or, on the embedded default, in a small
file under the instance folder shared by the processes of this machine (as ratelimit.FileBucket).

Each message reserves one unit of both caps before it goes out; a reservation that would pass either
cap is refused (nothing counted) with CapReached, which says which cap and when its window opens again.
So the count in a window never exceeds the cap, whatever the number of workers."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mailapp.sending.ratelimit import RateLimiter, _redis_client

HOUR, DAY = 3600, 86400

# KEYS[1] the relay's key prefix; ARGV: hourly cap, daily cap (0: none). Returns {which, window end}
# ({'', '0'} when reserved). Time from the Redis server: one timeline for every machine.
_RESERVE_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
local caps = {{'hour', tonumber(ARGV[1]), 3600}, {'day', tonumber(ARGV[2]), 86400}}
local keys = {}
for i, cap in ipairs(caps) do
  local window = math.floor(now / cap[3])
  keys[i] = KEYS[1] .. ':' .. cap[1] .. ':' .. window
  if cap[2] > 0 and tonumber(redis.call('GET', keys[i]) or '0') >= cap[2] then
    return {cap[1], tostring((window + 1) * cap[3])}
  end
end
for i, cap in ipairs(caps) do
  if cap[2] > 0 then
    redis.call('INCR', keys[i])
    redis.call('EXPIRE', keys[i], cap[3] + 60)
  end
end
return {'', '0'}
"""


class CapReached(Exception):
    """A relay's hourly or daily cap is used up: sending waits until `resumes_at`."""

    def __init__(self, relay_name: str, which: str, cap: int, resumes_at: datetime) -> None:
        self.relay_name, self.which, self.cap, self.resumes_at = relay_name, which, cap, resumes_at
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        label = "hourly" if self.which == "hour" else "daily"
        return (f"Waiting: relay {self.relay_name} reached its {label} cap of {self.cap}; "
                f"resumes at {self.resumes_at:%H:%M} UTC" + (
                    "" if self.which == "hour" else f" on {self.resumes_at:%Y-%m-%d}") + ".")


class FileCaps:
    """The same counters in a file, read and rewritten under an exclusive lock (flock) per reservation."""

    def __init__(self, path: Path, hour_cap: int, day_cap: int) -> None:
        self.path, self.hour_cap, self.day_cap = path, hour_cap, day_cap
        path.parent.mkdir(parents=True, exist_ok=True)

    def reserve(self) -> tuple[str, float]:
        with self.path.open("a+b") as state:
            fcntl.flock(state, fcntl.LOCK_EX)
            state.seek(0)
            saved = [int(value) for value in state.read().split()]
            now = time.time()
            windows = (int(now // HOUR), int(now // DAY))
            counts = [0, 0]
            if len(saved) == 4:  # counts of a window that has ended start again from 0
                counts = [saved[1] if saved[0] == windows[0] else 0,
                          saved[3] if saved[2] == windows[1] else 0]
            for index, (which, cap, length) in enumerate((("hour", self.hour_cap, HOUR),
                                                         ("day", self.day_cap, DAY))):
                if cap > 0 and counts[index] >= cap:
                    return which, float((windows[index] + 1) * length)
            counts = [count + 1 for count in counts]
            state.seek(0)
            state.truncate()
            state.write(f"{windows[0]} {counts[0]} {windows[1]} {counts[1]}".encode("ascii"))
        return "", 0.0


class RedisCaps:
    def __init__(self, url: str, key: str, hour_cap: int, day_cap: int) -> None:
        self.key, self.hour_cap, self.day_cap = key, hour_cap, day_cap
        self.script = _redis_client(url).register_script(_RESERVE_SCRIPT)

    def reserve(self) -> tuple[str, float]:
        which, ends = self.script(keys=[self.key], args=[self.hour_cap, self.day_cap])
        return (which.decode() if isinstance(which, bytes) else which), float(ends)


class CappedRateLimiter(RateLimiter):
    """The relay's per-second token bucket (RateLimiter) plus its hourly and daily caps: wait() raises
    CapReached instead of sending past a cap."""

    def __init__(self, rate: float, relay: str, redis_url: str = "", state_dir: str | Path | None = None,
                 *, hour_cap: int = 0, day_cap: int = 0, relay_name: str = "") -> None:
        super().__init__(rate, relay, redis_url, state_dir)
        self.relay_name = relay_name or relay
        self.hour_cap, self.day_cap = hour_cap, day_cap
        self.caps: FileCaps | RedisCaps | None = None
        if hour_cap > 0 or day_cap > 0:
            if redis_url:
                self.caps = RedisCaps(redis_url, f"mailapp:send-cap:{relay}", hour_cap, day_cap)
            else:
                name = hashlib.sha256(relay.encode()).hexdigest()[:16]
                folder = Path(state_dir) if state_dir is not None else Path(tempfile.gettempdir())
                self.caps = FileCaps(folder / f"send-cap-{name}.counts", hour_cap, day_cap)

    def wait(self) -> None:
        if self.caps is not None:
            which, ends = self.caps.reserve()
            if which:
                cap = self.hour_cap if which == "hour" else self.day_cap
                raise CapReached(self.relay_name, which, cap, datetime.fromtimestamp(ends, UTC))
        super().wait()
