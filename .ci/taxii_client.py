"""Talks to a Cordon gateway's TAXII 2.1 server with the Python taxii2-client (pinned in
requirements.txt), over mutual TLS, and prints what it saw as one JSON document.

  taxii_client.py read URL CERT KEY CA [PER_PAGE]
      discovery, API roots, the caller's collections, then every object of the first
      collection, page by page (taxii2client.v21.as_pages)
  taxii_client.py add URL CERT KEY CA ENVELOPE.json
      adds the envelope's objects to the first collection and polls the status resource
      until it is complete

Cordon's tests run it (integration-tests/tests/taxii.rs).
"""
import json
import sys

from taxii2client.v21 import Server, as_pages


def first_collection(url, cert, key, ca):
    server = Server(url, cert=(cert, key), verify=ca)
    roots = server.api_roots
    collections = roots[0].collections
    return server, roots, collections


def read(url, cert, key, ca, per_page="100"):
    server, roots, collections = first_collection(url, cert, key, ca)
    collection = collections[0]
    pages = 0
    objects = []
    for envelope in as_pages(collection.get_objects, per_request=int(per_page)):
        pages += 1
        objects.extend(envelope.get("objects", []))
    manifest = []
    for envelope in as_pages(collection.get_manifest, per_request=int(per_page)):
        manifest.extend(envelope.get("objects", []))
    print(json.dumps({
        "title": server.title,
        "api_roots": [root.url for root in roots],
        "collections": [{"id": c.id, "title": c.title, "can_read": c.can_read,
                         "can_write": c.can_write} for c in collections],
        "pages": pages,
        "objects": objects,
        "manifest": manifest,
    }))


def add(url, cert, key, ca, envelope_path):
    _, _, collections = first_collection(url, cert, key, ca)
    with open(envelope_path) as f:
        envelope = json.load(f)
    status = collections[0].add_objects(envelope, wait_for_completion=True,
                                        poll_interval=0.2, timeout=60)
    print(json.dumps({
        "status": status.status,
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "successes": status.successes,
        "failures": status.failures,
    }))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"read": read, "add": add}[command](*args)
