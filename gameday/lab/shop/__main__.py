"""`python -m gameday.lab.shop [--port P]`: serve the shop in the foreground (see `server.main`)."""

from gameday.lab.shop.server import main

main()
