// fixshell: a line-driven QuickFIX (1.15) FIX.4.4 initiator, the counterparty of the FIX acceptor's tests.
//
//   fixshell <store-dir> <host> <port> <sender-comp-id> <target-comp-id> [heartbeat-seconds=30] [reset-on-logon=N]
//
// One session, UseDataDictionary=N, FileStore in <store-dir>/store (sequence numbers survive restarts of fixshell),
// FileLog in <store-dir>/log. Built with -std=c++14: QuickFIX 1.15's headers use dynamic exception specifications,
// which C++17 rejects.
//
// Commands on stdin, one a line; events on stdout, one a line, flushed. `|` stands for SOH in both directions.
//   start                      start the initiator (connect + Logon; while started, QuickFIX reconnects and logs
//                              on again by itself 1 s after any disconnect)     -> ok | error <what>
//   stop                       initiator.stop(): Logout, wait, disconnect       -> ok
//   quit (or end of stdin)     stop if started, exit 0
//   send <type> [t=v|t=v...]   message of MsgType <type>; body fields in the given order (tags QuickFIX calls
//                              header fields go to the header), sent by Session::sendToTarget
//                                                                               -> sent <MsgSeqNum> | error <what>
//   test_request <id>          TestRequest 35=1 112=<id>                        -> sent <MsgSeqNum> | error <what>
//   raw <bytes>                write <bytes> as is on the session's own TCP socket, bypassing QuickFIX
//                                                                               -> ok | error <what>
//   rawconn <bytes>            open a SEPARATE plain TCP connection to host:port, write <bytes>, then print what comes
//                              back, one `rawrecv <bytes>` per complete FIX message (a tail that is not one gets its
//                              own line), until the peer closes or 2 s pass     -> rawrecv ...* then rawclosed
//   next_sender_seq <n>        Session::setNextSenderMsgSeqNum(n)              -> ok
//   next_target_seq <n>        Session::setNextTargetMsgSeqNum(n)              -> ok
//   seqs                       -> seqs sender=<next sender seq> target=<next target seq>
// Events (Application callbacks): create | logon | logout | app <fields> | admin <fields> | toadmin <fields>.
// app/admin lines carry the received message exactly as it came on the wire (the bytes QuickFIX's Log saw), or
// QuickFIX's re-serialisation (message.toString()) when those bytes are not at hand (messages it had queued).
// <fields> never ends with `|`; rawrecv shows the bytes exactly (trailing `|` included); other control bytes are
// shown as \xNN.
// Without a data dictionary (there is no FIX44.xml here) QuickFIX rejects with a session Reject, instead of passing
// on, any received message with a repeated tag (every repeating group) or with a header tag after a body tag.
// QuickFIX drops PossDupFlag (43) and OrigSendingTime (122) from the header of a new message it sends.
//
// How `raw` finds the session's socket: QuickFIX keeps its Responder private, so fixshell scans its own file
// descriptors for the TCP socket whose peer is <port> (the initiator has only the one connection).
#pragma GCC diagnostic ignored "-Wdeprecated"  // QuickFIX's virtuals carry throw(...) specifications
#include <quickfix/Application.h>
#include <quickfix/FileLog.h>
#include <quickfix/FileStore.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

static std::mutex out_mutex;
static void emit(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::cout << line << '\n' << std::flush;
}

// Bytes for a line: SOH as '|', other control bytes as \xNN.
static std::string shown(const std::string& bytes, bool strip_last_soh) {
  std::string s;
  for (unsigned char c : bytes) {
    char hex[8];
    if (c == 1) s += '|';
    else if (c < 0x20 || c == 0x7f) { snprintf(hex, sizeof hex, "\\x%02x", c); s += hex; }
    else s += static_cast<char>(c);
  }
  if (strip_last_soh && !s.empty() && s.back() == '|') s.pop_back();
  return s;
}

// Value of `tag` in a raw FIX string, "" if absent.
static std::string raw_field(const std::string& raw, const std::string& tag) {
  std::string key = "\001" + tag + "=";
  size_t at = raw.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return raw.substr(at, raw.find('\001', at) - at);
}

// A Log that writes the FileLog and remembers the last message received, as it came on the wire.
static std::mutex wire_mutex;
static std::string last_incoming;
struct TapLog : FIX::Log {
  FIX::Log* file;
  explicit TapLog(FIX::Log* f) : file(f) {}
  void clear() override { file->clear(); }
  void backup() override { file->backup(); }
  void onIncoming(const std::string& s) override {
    { std::lock_guard<std::mutex> lock(wire_mutex); last_incoming = s; }
    file->onIncoming(s);
  }
  void onOutgoing(const std::string& s) override { file->onOutgoing(s); }
  void onEvent(const std::string& s) override { file->onEvent(s); }
};
struct TapLogFactory : FIX::LogFactory {
  FIX::FileLogFactory files;
  explicit TapLogFactory(const FIX::SessionSettings& s) : files(s) {}
  FIX::Log* create() override { return new TapLog(files.create()); }
  FIX::Log* create(const FIX::SessionID& id) override { return new TapLog(files.create(id)); }
  void destroy(FIX::Log* log) override {
    files.destroy(static_cast<TapLog*>(log)->file);
    delete log;
  }
};

// The received message's wire bytes if the Log saw them, else QuickFIX's re-serialisation.
static std::string received(const FIX::Message& m) {
  std::lock_guard<std::mutex> lock(wire_mutex);
  const FIX::Header& h = m.getHeader();
  if (h.isSetField(34) && h.isSetField(35) && raw_field(last_incoming, "34") == h.getField(34) &&
      raw_field(last_incoming, "35") == h.getField(35))
    return shown(last_incoming, true);
  return shown(m.toString(), true);
}

struct Shell : FIX::Application {
  void onCreate(const FIX::SessionID&) override { emit("create"); }
  void onLogon(const FIX::SessionID&) override { emit("logon"); }
  void onLogout(const FIX::SessionID&) override { emit("logout"); }
  void toAdmin(FIX::Message& m, const FIX::SessionID&) override { emit("toadmin " + shown(m.toString(), true)); }
  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) override {}
  void fromAdmin(const FIX::Message& m, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::RejectLogon) override {
    emit("admin " + received(m));
  }
  // Never throws: every application message is printed and accepted.
  void fromApp(const FIX::Message& m, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::UnsupportedMessageType)
      override {
    emit("app " + received(m));
  }
};

// A Message whose body keeps fields in the order they were added (FieldMap::setField sorts by tag).
struct OrderedMessage : FIX::Message {
  void add(int tag, const std::string& value) {
    if (isHeaderField(tag)) getHeader().setField(tag, value);
    else if (isTrailerField(tag)) getTrailer().setField(tag, value);
    else appendField(FIX::FieldBase(tag, value));
  }
};

static std::string unbar(std::string s) {
  for (char& c : s)
    if (c == '|') c = '\001';
  return s;
}

static int connect_to(const std::string& host, const std::string& port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) { close(fd); fd = -1; }
  }
  freeaddrinfo(res);
  return fd;
}

// The TCP socket of this process whose peer port is `port` (QuickFIX's session connection), or -1.
static int session_socket(int port) {
  DIR* dir = opendir("/proc/self/fd");
  int found = -1;
  for (dirent* e; dir && found < 0 && (e = readdir(dir));) {
    int fd = atoi(e->d_name);
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (e->d_name[0] == '.' || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM ||
        getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0)
      continue;
    int p = peer.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port)
            : peer.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port) : -1;
    if (p == port) found = fd;
  }
  if (dir) closedir(dir);
  return found;
}

static bool write_all(int fd, const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// `rawconn`: a separate connection; echo what comes back, one FIX message a line, for up to 2 s.
static void raw_conn(const std::string& host, const std::string& port, const std::string& bytes) {
  int fd = connect_to(host, port);
  if (fd < 0) return emit("error connect failed");
  if (!write_all(fd, bytes)) emit("error write failed");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::string buf;
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) break;
    char chunk[4096];
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t end; (end = buf.find("\00110=")) != std::string::npos && buf.size() >= end + 8;) {
      emit("rawrecv " + shown(buf.substr(0, end + 8), false));
      buf.erase(0, end + 8);
    }
  }
  if (!buf.empty()) emit("rawrecv " + shown(buf, false));
  close(fd);
  emit("rawclosed");
}

int main(int argc, char** argv) {
  if (argc < 6) {
    std::cerr << "usage: fixshell <store-dir> <host> <port> <sender> <target> [heartbeat-s=30] [reset-on-logon=N]\n";
    return 2;
  }
  std::string dir = argv[1], host = argv[2], port = argv[3];
  mkdir(dir.c_str(), 0755);
  FIX::SessionID id("FIX.4.4", argv[4], argv[5]);
  FIX::Dictionary d;
  std::pair<const char*, std::string> conf[] = {
      {"ConnectionType", "initiator"}, {"SocketConnectHost", host}, {"SocketConnectPort", port},
      {"HeartBtInt", argc > 6 ? argv[6] : "30"},
      {"ResetOnLogon", argc > 7 && (argv[7][0] == 'Y' || argv[7][0] == 'y') ? "Y" : "N"},
      {"ReconnectInterval", "1"}, {"StartTime", "00:00:00"}, {"EndTime", "00:00:00"}, {"CheckLatency", "N"},
      {"FileStorePath", dir + "/store"}, {"FileLogPath", dir + "/log"}, {"UseDataDictionary", "N"},
      // These two only take effect with a data dictionary: without one QuickFIX 1.15 still rejects (35=3) any
      // message with a repeated tag (373=13, so every repeating group) or a header tag after a body tag (373=14).
      {"ValidateUserDefinedFields", "N"}, {"ValidateFieldsOutOfOrder", "N"}};
  for (auto& kv : conf) d.setString(kv.first, kv.second);
  try {
    FIX::SessionSettings settings;
    settings.set(d);  // FileLogFactory's global log reads FileLogPath from the defaults
    settings.set(id, d);
    Shell app;
    FIX::FileStoreFactory store(settings);
    TapLogFactory logs(settings);
    FIX::SocketInitiator initiator(app, store, settings, logs);
    FIX::Session* session = FIX::Session::lookupSession(id);
    bool started = false;
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::istringstream words(line);
      std::string cmd, rest;
      words >> cmd;
      std::getline(words >> std::ws, rest);
      try {
        if (cmd.empty()) continue;
        if (cmd == "quit") break;
        if (cmd == "start") {
          if (started) throw std::runtime_error("already started");
          initiator.start();
          started = true;
          emit("ok");
        } else if (cmd == "stop") {
          if (started) initiator.stop();
          started = false;
          emit("ok");
        } else if (cmd == "send" || cmd == "test_request") {
          OrderedMessage m;
          std::istringstream fields(cmd == "send" ? rest : "");
          std::string type = "1", field;
          if (cmd == "send") fields >> type >> std::ws;
          m.getHeader().setField(35, type);
          if (cmd == "test_request") m.add(112, rest);
          while (std::getline(fields, field, '|')) {
            size_t eq = field.find('=');
            if (field.empty()) continue;
            if (eq == std::string::npos) throw std::runtime_error("field without '=': " + field);
            m.add(std::stoi(field.substr(0, eq)), field.substr(eq + 1));
          }
          if (FIX::Session::sendToTarget(m, id)) emit("sent " + m.getHeader().getField(34));
          else emit("error not sent (QuickFIX refused it)");
        } else if (cmd == "raw") {
          int fd = session_socket(std::stoi(port));
          if (fd < 0) emit("error not connected");
          else emit(write_all(fd, unbar(rest)) ? "ok" : "error write failed");
        } else if (cmd == "rawconn") {
          raw_conn(host, port, unbar(rest));
        } else if (cmd == "next_sender_seq") {
          session->setNextSenderMsgSeqNum(std::stoi(rest));
          emit("ok");
        } else if (cmd == "next_target_seq") {
          session->setNextTargetMsgSeqNum(std::stoi(rest));
          emit("ok");
        } else if (cmd == "seqs") {
          emit("seqs sender=" + std::to_string(session->getExpectedSenderNum()) +
               " target=" + std::to_string(session->getExpectedTargetNum()));
        } else {
          emit("error unknown command " + cmd);
        }
      } catch (std::exception& e) {
        emit(std::string("error ") + e.what());
      }
    }
    if (started) initiator.stop();
  } catch (std::exception& e) {
    emit(std::string("error ") + e.what());
    return 1;
  }
  return 0;
}
