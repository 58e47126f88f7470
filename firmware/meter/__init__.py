# Energy meter over Modbus RTU: modbus.py (the master), models.py (register maps as data),
# decode.py (exact integer decoding), meter.py (readings and plausibility).
