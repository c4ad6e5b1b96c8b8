"""The FastAPI peer under uvicorn's own multi-worker supervisor, with one fix: the listening
socket is created with ``proto=IPPROTO_TCP``, so that asyncio turns TCP_NODELAY on for each
connection. ``uvicorn --workers N`` leaves it off (Kludex/uvicorn#3149), and then every
keep-alive request after the first waits about 40 ms for the client's delayed ACK. (Under
uvloop, which ``uvicorn[standard]`` installs, the delay does not show: ``python -m
bench.load`` runs all three.)

``python -m bench.peers.uvicorn_nodelay --port 8002 --workers 2 [--http h11 --loop asyncio]``
"""

from __future__ import annotations

import argparse
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


def main() -> None:
    """Bind the socket the way asyncio would, then run uvicorn's worker supervisor on it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--http", default="auto", help="uvicorn's --http")
    parser.add_argument("--loop", default="auto", help="uvicorn's --loop")
    arguments = parser.parse_args()
    config = uvicorn.Config(
        "bench.peers.fastapi_app:app",
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        http=arguments.http,
        loop=arguments.loop,
        access_log=False,
        log_level="warning",
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((arguments.host, arguments.port))
    listener.listen(config.backlog)
    listener.set_inheritable(True)
    Multiprocess(config, sockets=[listener]).run()


if __name__ == "__main__":
    main()
