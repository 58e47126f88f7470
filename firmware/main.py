# Entry point on every board: mount flash, load config, run the charger application.
from app import boot

boot.main()
