"""The test broker carries a QoS 1 message with paho-mqtt (mosquitto, and amqtt as the fallback)."""
import threading

import paho.mqtt.client as mqtt
import pytest

from sim.broker import Broker, mosquitto_binary


def _roundtrip(broker) -> bytes:
    got = threading.Event()
    box = {}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: (box.setdefault("p", m.payload), got.set())
    sub.connect(broker.host, broker.port)
    sub.subscribe("evc/t/x", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for _ in range(50):
        pub.publish("evc/t/x", b"hello", qos=1).wait_for_publish(2)
        if got.wait(0.2):
            break
    pub.loop_stop()
    sub.loop_stop()
    return box.get("p")


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_broker_roundtrip(kind):
    if kind == "mosquitto" and not mosquitto_binary():
        pytest.skip("mosquitto not installed; amqtt is used instead")
    with Broker(prefer=kind) as b:
        assert _roundtrip(b) == b"hello"
