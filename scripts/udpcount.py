# Counts the MoldUDP64 packets and messages sent to a UDP port, until SIGTERM (scripts/mdbench.sh).
import socket, struct, sys, time, signal
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8<<20)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.settimeout(0.5)
packets = msgs = 0; first = last = None; maxseq = 0
def done(*a):
    dur = (last - first) if first and last and last > first else 0
    print(f"packets={packets} messages={msgs} busy_seconds={dur:.3f} msgs_per_s={msgs/dur if dur else 0:.0f} next={maxseq}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    try:
        b = s.recv(2048)
    except socket.timeout:
        continue
    seq, count = struct.unpack(">QH", b[10:20])
    if count and count != 0xFFFF:
        now = time.time()
        if first is None: first = now
        last = now
        packets += 1; msgs += count; maxseq = seq + count
