# The board's fault state: a charger that cannot be built (a damaged key, a missing CA, a board
# part that fails) or a config that does not validate. boot.py keeps the relay open and logs the
# reason every minute; this adds what operators see from afar:
#   - the fault LED blinking (app/feedback.py "fault"), unlike the steady light of a charger
#     that runs but is faulted;
#   - when the config names a broker: the uplink's own code (uplink/service.py) publishes a
#     retained status {"state": "fault", "fault": reason, "fw": ...} and a "fault" event, and
#     reconnects with its usual backoff while the board waits. Nothing comes down (no
#     subscriptions) and nothing is forwarded (no journal is opened).
# No watchdog is armed and nothing reboots: the board would only fail the same way again.
#
#   tasks = fault.start(reason, cfg, dev, root); ...; await fault.stop(tasks)  (a config fixed)
from micropython import const

from app import log

_REASON_CHARS = const(200)  # the reason as the status carries it: enough to act on, small on the wire


class _NoRecords:
    """The record store as the uplink reads it with nothing to send (uplink/forward.py,
    uplink/status.py): the journal is not opened, so the status says seq 0, pending 0."""

    def acked_seq(self):
        return 0

    def next_seq(self):
        return 1

    def verify(self, msg):  # no downlink document is trusted, or even expected
        raise ValueError("fault state: nothing comes down")


def start(reason, cfg=None, dev=None, root=None):
    """The fault LED and, with a broker in cfg, the report; returns what stop() ends."""
    import board

    from app.feedback import Feedback
    from app.supervisor import Supervisor

    sup = Supervisor()  # restarts a task that crashes, with backoff; no watchdog
    running = []
    try:  # a board part may be the fault: then no LED, the console still says it
        led = Feedback({"led_fault": board.pin(cfg["pins"].get("led_fault", "led_fault") if cfg else "led_fault", 0)})
        led.steady("fault")
        running.append(sup.spawn("fault-led", led.run, vital=False).task)
    except Exception as exc:
        log.warn("fault", "no fault LED: %s" % exc)
    if cfg is not None and cfg["uplink"]["broker"]:
        try:
            running += _report(sup, reason, cfg, dev, root)
        except Exception as exc:  # e.g. the CA file is the fault: never over an unverified link
            log.error("fault", "not reported to the broker: %s: %s" % (type(exc).__name__, exc))
    return running


async def stop(running):
    """End the fault state's tasks (the uplink's connection closes as its task unwinds)."""
    import asyncio

    for t in running:
        t.cancel()
    await asyncio.sleep_ms(0)  # they unwind now, not in the next asyncio.run


def _report(sup, reason, cfg, dev, root):
    from app.version import FW_VERSION
    from hal import net
    from uplink.service import Uplink

    link = net.Link(cfg["net"])  # WLAN or Ethernet, as the charger would bring it up
    fields = {"state": "fault", "fault": reason[:_REASON_CHARS], "fw": FW_VERSION}
    store = _NoRecords()
    up = Uplink(cfg, dev, store, status_fn=lambda: dict(fields), state_dir=root, verify=store.verify,
                link_up=link.up)
    up._subs = []  # no tariff, list or command can be applied by a charger that does not run
    up.event("fault", reason=fields["fault"])
    log.info("fault", "reporting the fault to %s" % cfg["uplink"]["broker"])
    return [sup.spawn("fault-net", link.run, vital=False).task, sup.spawn("fault-uplink", up.run, vital=False).task]
