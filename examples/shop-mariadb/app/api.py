#!/usr/bin/env python3
"""The shop's HTTP API: orders in MariaDB, and one job per order for the worker.

- ``GET /``: a small HTML page with the latest orders
- ``GET /health``: 200 when the database answers, 503 otherwise
- ``GET /api/orders``: the latest orders, as a JSON list
- ``POST /api/orders`` ``{"customer": "...", "item": "...", "quantity": 1}``: a new order and
  its job; 201 with the order
"""

from __future__ import annotations

import html
import json
import os
import signal
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import database
import pymysql

PORT = int(os.environ.get("PORT", "8000"))
MAX_BODY_BYTES = 64 * 1024
LIST_LIMIT = 100
ORDER_COLUMNS = "id, customer, item, quantity, status, created_at"


def order_json(row: dict[str, Any]) -> dict[str, Any]:
    created: datetime = row["created_at"]
    return {**row, "created_at": created.isoformat()}


def latest_orders(limit: int) -> list[dict[str, Any]]:
    with database.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {ORDER_COLUMNS} FROM orders ORDER BY id DESC LIMIT %s", (limit,))
        return [order_json(row) for row in cursor.fetchall()]


def validate_order(data: Any) -> tuple[str, str, int]:
    """The customer, item and quantity of a new order, or ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    customer, item, quantity = data.get("customer"), data.get("item"), data.get("quantity", 1)
    for name, value in (("customer", customer), ("item", item)):
        if not isinstance(value, str) or not 1 <= len(value.strip()) <= 100:
            raise ValueError(f"{name} must be a text of 1 to 100 characters")
    if type(quantity) is not int or not 1 <= quantity <= 1000:
        raise ValueError("quantity must be a whole number from 1 to 1000")
    return customer.strip(), item.strip(), quantity


def create_order(customer: str, item: str, quantity: int) -> dict[str, Any]:
    with database.connect() as connection:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO orders (customer, item, quantity) VALUES (%s, %s, %s)",
                (customer, item, quantity),
            )
            order_id = cursor.lastrowid
            cursor.execute("INSERT INTO jobs (kind, order_id) VALUES ('fulfil', %s)", (order_id,))
            cursor.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s", (order_id,))
            row = cursor.fetchone()
        connection.commit()
    return order_json(row)


def index_page(orders: list[dict[str, Any]]) -> str:
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(order[key]))}</td>"
            for key in ("id", "customer", "item", "quantity", "status")
        )
        + "</tr>"
        for order in orders
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Shop</title></head>
<body>
<h1>Shop</h1>
<p>The latest orders. New ones: <code>POST /api/orders</code>.</p>
<table>
<tr><th>#</th><th>Customer</th><th>Item</th><th>Quantity</th><th>Status</th></tr>
{rows}
</table>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "shop"

    def version_string(self) -> str:
        return self.server_version

    def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value: Any) -> None:
        self.send(status, "application/json", json.dumps(value).encode())

    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        path = self.route()
        handlers = {"/": self.index, "/health": self.health, "/api/orders": self.list_orders}
        if path not in handlers:
            self.send_json(404, {"error": "not found"})
            return
        try:
            handlers[path]()
        except pymysql.MySQLError as exc:
            self.log_message("database error on %s: %s", path, exc)
            self.send_json(503, {"error": "database unavailable"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.route()
        if path != "/api/orders":
            if path in ("/", "/health"):
                self.send_json(405, {"error": "method not allowed"})
            else:
                self.send_json(404, {"error": "not found"})
            return
        try:
            self.post_order()
        except pymysql.MySQLError as exc:
            self.log_message("database error on %s: %s", path, exc)
            self.send_json(503, {"error": "database unavailable"})

    def health(self) -> None:
        try:
            with database.connect() as connection, connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except pymysql.MySQLError as exc:
            self.send_json(503, {"status": "unavailable", "error": str(exc)})
            return
        self.send_json(200, {"status": "ok"})

    def index(self) -> None:
        page = index_page(latest_orders(10))
        self.send(200, "text/html; charset=utf-8", page.encode())

    def list_orders(self) -> None:
        self.send_json(200, latest_orders(LIST_LIMIT))

    def post_order(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_json(411, {"error": "Content-Length required"})
            return
        if not 0 <= length <= MAX_BODY_BYTES:
            self.send_json(413, {"error": f"the body may have at most {MAX_BODY_BYTES} bytes"})
            return
        try:
            order = validate_order(json.loads(self.rfile.read(length) or b"null"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self.send_json(400, {"error": str(exc)})
            return
        self.send_json(201, create_order(*order))


def main() -> int:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    # server_close() then waits for the requests in flight.
    server.daemon_threads = False

    def stop(signum: int, frame: object) -> None:
        print(f"{signal.Signals(signum).name} received, finishing requests in flight", flush=True)
        # shutdown() waits for serve_forever() to return: not from this (the same) thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on :{PORT}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
