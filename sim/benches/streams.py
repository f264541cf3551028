"""Stream transfers for cocotb benches, one clock cycle per step (drive, ``ReadOnly``, sample).

``tick`` is the bench's own coroutine that waits for the next rising edge (and counts it).
``valid`` is only ever dropped after a transfer, as Amaranth's stream rules demand.
"""

from cocotb.triggers import ReadOnly

__all__ = ["offer", "take"]


async def offer(tick, valid, payload, ready, word: int) -> None:
    """Hold ``valid`` with ``word`` until the receiver takes it."""
    payload.value = word
    valid.value = 1
    while True:
        await ReadOnly()
        fire = int(ready.value)
        await tick()
        if fire:
            break
    valid.value = 0


async def take(tick, valid, payload, ready) -> int:
    """Raise ``ready`` until one word arrives; return it."""
    ready.value = 1
    while True:
        await ReadOnly()
        fire = int(valid.value)
        word = payload.value.to_unsigned() if fire else 0
        await tick()
        if fire:
            break
    ready.value = 0
    return word
