#!/usr/bin/env python3
"""A tiny DNS server over UDP for the tests: dns_responder.py ADDRESS GATHER

Answers on ADDRESS port 53:
  A     NAME.delay.test  ->  10.77.X.Y, where X.Y is taken from the digits in NAME (h12 -> 10.77.0.12)
  AAAA  NAME.delay.test  ->  no address (NOERROR, empty answer)
  anything else          ->  NXDOMAIN, at once
Two datagrams that are not queries steer the delay.test answers, so that a test can prove
what happens while lookups wait without timing them:
  hold   from now on, hold every delay.test answer...
  go     ...until this has come and GATHER distinct delay.test names are waiting: then answer
         them all, and every later query at once (until the next hold)
Lookups that run one at a time never gather GATHER names: they fail at the resolver's
time-out. Prints "ready" once listening, and runs until killed.
"""
import asyncio
import re
import struct
import sys

QTYPE_A, QTYPE_AAAA = 1, 28


def parse_question(packet):
    """(id, flags, qname, qtype, end of the question) of a query."""
    qid, flags = struct.unpack("!HH", packet[:4])
    labels, i = [], 12
    while packet[i] != 0:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, _qclass = struct.unpack("!HH", packet[i + 1:i + 5])
    return qid, flags, ".".join(labels).lower(), qtype, i + 5


def answer(packet):
    """(reply, the delay.test name asked, or None)."""
    qid, flags, name, qtype, end = parse_question(packet)
    question = packet[12:end]
    rd = flags & 0x0100
    if not name.endswith(".delay.test"):
        header = struct.pack("!HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0)   # NXDOMAIN
        return header + question, None
    records = b""
    count = 0
    if qtype == QTYPE_A:
        digits = re.sub(r"\D", "", name.split(".")[0]) or "0"
        n = int(digits) % 65536
        rdata = bytes([10, 77, n // 256, n % 256])
        records = struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, 60, 4) + rdata
        count = 1
    header = struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, count, 0, 0)
    return header + question + records, name


class Responder(asyncio.DatagramProtocol):
    def __init__(self, gather):
        self.gather = gather
        self.holding, self.go = False, False
        self.held, self.names = [], set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if data in (b"hold", b"go"):
            if data == b"hold":
                self.holding, self.go, self.held, self.names = True, False, [], set()
            else:
                self.go = True
            self.release_if_due()
            return
        try:
            reply, name = answer(data)
        except Exception:       # a malformed query gets no answer
            return
        if name is None or not self.holding:
            self.transport.sendto(reply, addr)
            return
        self.held.append((reply, addr))
        self.names.add(name)
        self.release_if_due()

    def release_if_due(self):
        if self.holding and self.go and len(self.names) >= self.gather:
            for reply, addr in self.held:
                self.transport.sendto(reply, addr)
            self.holding, self.held = False, []


async def main():
    address, gather = sys.argv[1], int(sys.argv[2])
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Responder(gather), local_addr=(address, 53))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
