#!/usr/bin/python3
"""ping through sockbroker, from the gRPC contract alone (proto/sockbroker/v1/*.proto).

Opens a session, creates a raw ICMP socket on the broker (AF_INET, SOCK_RAW, IPPROTO_ICMP:
an unprivileged caller needs a policy grant for it), sends echo requests with sendto and reads
the replies with recvfrom, all as envelopes on the session's Call stream. Run generate.sh first
and put its output directory on PYTHONPATH.
"""
import argparse
import os
import queue
import struct
import sys
import time

import grpc

from google.rpc import error_details_pb2
from sockbroker.v1 import address_pb2, session_pb2, session_pb2_grpc, socket_pb2, socket_pb2_grpc

SESSION_METADATA = 'sockbroker-session'  # names the session on every call (daemon/rpc.ts)


def target(address):
    """unix:/PATH or tcp:HOST:PORT (as `sockbroker serve --listen`) to a gRPC target."""
    if address.startswith('unix:'):
        return address
    if address.startswith('tcp:'):
        return address[len('tcp:'):]
    raise SystemExit('unsupported broker address %r: expected unix:/PATH or tcp:HOST:PORT' % address)


def os_error(status):
    """The OSError a google.rpc.Status stands for (errno from its ErrorInfo metadata)."""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and 'errno' in info.metadata:
            return OSError(int(info.metadata['errno']), status.message)
    if status.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]:
        return TimeoutError('timed out')
    return OSError(status.message)


class Session:
    """A broker session and its Call stream; calls are made one at a time."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(target(address))
        opened = session_pb2_grpc.SessionServiceStub(self.channel).OpenSession(session_pb2.OpenSessionRequest())
        self.metadata = ((SESSION_METADATA, opened.session_id),)
        self.module = session_pb2_grpc.SessionServiceStub(self.channel).GetModuleInfo(session_pb2.GetModuleInfoRequest(), metadata=self.metadata)
        self.requests = queue.Queue()
        # The open Call stream keeps the session attached (no grace timer runs meanwhile).
        self.responses = socket_pb2_grpc.SocketServiceStub(self.channel).Call(iter(self.requests.get, None), metadata=self.metadata)
        self.next_id = 1

    def call(self, op, request):
        call_id, self.next_id = self.next_id, self.next_id + 1
        self.requests.put(socket_pb2.CallRequest(call_id=call_id, **{op: request}))
        response = next(self.responses)
        assert response.call_id == call_id
        if response.HasField('error'):
            raise os_error(response.error)
        return getattr(response, op)

    def close(self):
        self.requests.put(None)
        session_pb2_grpc.SessionServiceStub(self.channel).CloseSession(session_pb2.CloseSessionRequest(), metadata=self.metadata)
        self.channel.close()


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def echo_request(ident, seq, payload):
    header = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
    return struct.pack('!BBHHH', 8, 0, checksum(header + payload), ident, seq) + payload


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('host', nargs='?', default='127.0.0.1', help='host name or IPv4 address (resolved by the broker)')
    parser.add_argument('-c', '--count', type=int, default=3)
    parser.add_argument('-W', '--timeout', type=float, default=2.0, help='seconds to wait for each reply')
    parser.add_argument('--broker', default=os.environ.get('SOCKBROKER_ADDRESS', 'unix:/run/sockbroker/sockbroker.sock'))
    args = parser.parse_args()

    session = Session(args.broker)
    c = session.module.constants  # the broker host's socket module constants
    replies = 0
    try:
        try:
            sock = session.call('create', socket_pb2.CreateRequest(family=c['AF_INET'], type=c['SOCK_RAW'], protocol=c['IPPROTO_ICMP'])).handle
        except OSError as e:
            print('ping.py: %s' % e, file=sys.stderr)
            return 2
        ident = os.getpid() & 0xffff
        to = address_pb2.Address(inet=address_pb2.InetAddress(host=args.host, port=0))
        for seq in range(1, args.count + 1):
            payload = struct.pack('!d', time.time()) + b'sockbroker-python'
            start = time.monotonic()
            session.call('send', socket_pb2.SendRequest(handle=sock, data=echo_request(ident, seq, payload), address=to))
            deadline = start + args.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    print('no reply for icmp_seq=%d' % seq)
                    break
                try:
                    got = session.call('recv', socket_pb2.RecvRequest(handle=sock, bufsize=2048, want_address=True, timeout=left))
                except TimeoutError:
                    print('no reply for icmp_seq=%d' % seq)
                    break
                packet = got.data
                icmp = packet[(packet[0] & 0x0f) * 4:]
                # Loopback also delivers our own request to raw sockets: keep only our replies.
                if len(icmp) >= 8 and icmp[0] == 0 and struct.unpack('!HH', icmp[4:8]) == (ident, seq):
                    replies += 1
                    print('%d bytes from %s: icmp_seq=%d ttl=%d time=%.2f ms' % (len(icmp), got.address.inet.host, seq, packet[8], (time.monotonic() - start) * 1000))
                    break
        session.call('close', socket_pb2.CloseSocketRequest(handle=sock))
    finally:
        session.close()
    print('%d packets transmitted, %d received' % (args.count, replies))
    return 0 if replies else 1


if __name__ == '__main__':
    sys.exit(main())
