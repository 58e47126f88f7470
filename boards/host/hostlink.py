# The host board's network link (board.network_link), as hal/net.py drives a network.LAN: up
# unless the file ROOT/pins/link holds "0", so tests take it down and bring it back the way they
# set pin levels. No real network calls: the host's own network is always there.


class Link:
    def __init__(self, path):
        self.path = path

    def active(self, on=None):
        return True

    def isconnected(self):
        try:
            with open(self.path) as f:
                return f.read(1) != "0"
        except OSError:
            return True  # no file: up

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
