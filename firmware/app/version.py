# Firmware version: carried in every record (`fw`) and in the status message.
FW_VERSION = "0.1.0"


def get():
    return {"fw": FW_VERSION}
