// The checked communication layer for distributed training (docs/parallelism.md).
//
// Comm is a front end over an abstract Transport (transport.h), one per communicator of the rank
// grid ("dp", "sp", "tp", ...). The front end owns everything that does not depend on how bytes
// move: it validates every buffer size against the group and throws seqvit::Error naming the
// operation, the communicator and the rank; it counts bytes and time per operation; it sends
// large all-reduces in pieces and runs its own ring reduce-scatter for large messages; it checks
// that a receive got exactly what was posted. The transport only moves bytes, and its library's
// failures come back as seqvit::Error in the same form. The one transport today is MPI
// (MpiTransport, mpi_comm.h, which also starts and ends MPI); only the code that starts MPI
// includes that header, so this one, and everything built on Comm, never sees <mpi.h>. A future
// NCCL transport slots in below the same front end: it takes device buffers and runs its calls
// on a CUDA stream given when it is built, with the counters and checks unchanged.
//
// Every operation is paired with its adjoint, which the backward pass calls with the forward's
// shapes swapped:
//
//   forward                 backward (adjoint)
//   identity (copy)         all_reduce (sum)
//   all_reduce (sum)        identity            (the upstream gradient is already replicated)
//   all_gather(v)           reduce_scatter(v)   (and vice versa)
//   all_to_all(v)           all_to_all(v) with send and receive counts swapped (the inverse)
//   broadcast(root)         reduce(root, sum)
//   shift by +k (sendrecv)  shift by -k
//   isend to r / irecv      irecv from r / isend
//
// Buffers are flat spans; per-rank blocks are contiguous and in rank order. Counts are in
// elements. Counters record, per operation kind, the bytes this rank sends in the operation's
// algorithmic (ring / pairwise) pattern and the wall seconds spent, see CommStats.
//
// Threading: only the main thread communicates (MPI is initialised with MPI_THREAD_FUNNELED).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/device.h"
#include "parallel/transport.h"

namespace seqvit::parallel {

// Element types a Comm moves. Sums (all_reduce, reduce_scatter, reduce) exclude std::byte.
template <typename T>
concept CommElement = std::same_as<T, float> || std::same_as<T, double> ||
    std::same_as<T, int32_t> || std::same_as<T, int64_t> || std::same_as<T, std::byte>;
template <typename T>
concept Summable = CommElement<T> && !std::same_as<T, std::byte>;

enum class OpKind : int {
  AllToAll,
  AllToAllV,
  AllGather,
  AllGatherV,
  ReduceScatter,
  ReduceScatterV,
  AllReduce,
  Broadcast,
  Reduce,
  Send,  // isend, and the send half of sendrecv
  Recv,  // irecv, and the receive half of sendrecv (0 bytes sent; seconds spent waiting)
  Barrier,
};
// all_reduce sends large buffers in pieces of at most this many bytes (see Comm::all_reduce).
inline constexpr size_t kAllReducePieceBytes = size_t{16} << 20;
inline constexpr int kNumOpKinds = static_cast<int>(OpKind::Barrier) + 1;
const char* to_string(OpKind op);  // "all_to_all", "all_gather_v", ...

// A snapshot of counters, one entry per (communicator, op kind) that was used.
struct CommStats {
  struct Entry {
    std::string comm;  // communicator name, "sp"
    OpKind op;
    uint64_t bytes = 0;  // bytes sent by this rank
    double seconds = 0;  // wall time inside the calls (and inside wait() for requests)
    uint64_t calls = 0;
  };
  std::vector<Entry> entries;

  // Totals over the entries that match; comm "" matches every communicator.
  uint64_t bytes(const std::string& comm, OpKind op) const;
  uint64_t calls(const std::string& comm, OpKind op) const;
  double seconds(const std::string& comm, OpKind op) const;
  uint64_t total_bytes() const;
  // Appends other's entries, adding to entries of the same (comm, op).
  CommStats& operator+=(const CommStats& other);
  // "sp all_to_all 12.0 MiB 0.031 s | dp all_reduce 3.0 MiB 0.002 s", or "no communication".
  std::string report() const;
};

namespace detail {
struct CommState;  // transport, name, rank, size, counters, scratch; address stable across moves
}

// A pending isend/irecv. wait() completes it (and counts the time) and, for a receive, checks
// that exactly the posted number of elements arrived. test() is the non-blocking form: one
// check in the transport, which also drives its progress engine (MPI moves large messages with
// a rendezvous that advances only inside MPI calls, so a rank computing for long should call
// test() now and then, see ring attention); it returns whether the request is complete (true
// for an inactive one), does the same receive check on completion and counts its time like
// wait(). The destructor waits for a request still pending so that its buffer is never released
// under the transport. A Request must not outlive its Comm.
class Request {
 public:
  Request() = default;
  Request(Request&& other) noexcept;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  void wait();
  bool test();
  bool active() const { return transfer_ >= 0; }

 private:
  friend class Comm;
  Request(int transfer, detail::CommState* state, OpKind op, int peer, int64_t count);
  void check_count(int64_t got) const;  // a completed irecv got count_ elements
  void complete_quietly() noexcept;     // waits, reporting a failure on stderr
  int transfer_ = -1;                   // the transport's handle; -1: inactive
  detail::CommState* state_ = nullptr;  // the owning Comm's state
  OpKind op_ = OpKind::Send;
  int peer_ = -1;
  int64_t count_ = 0;  // elements posted; an irecv must receive exactly this many
};

void wait_all(std::span<Request> requests);

class Comm {
 public:
  // Takes over `transport`, one communicator, under `name`. mpi_world() (mpi_comm.h) builds the
  // whole job's.
  Comm(std::unique_ptr<Transport> transport, std::string name);

  Comm(Comm&& other) noexcept;
  Comm& operator=(Comm&& other) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm();  // destroys the transport, which frees a communicator it created (split)

  // Ranks with the same color form one new communicator, ordered by key. It inherits the
  // device (set_device).
  Comm split(int color, int key, std::string name) const;

  // Buffers may be memory of `device` (not owned; must outlive the communicator): every call
  // first synchronises it, so a collective runs after the ops that produced its buffers, and a
  // device the host cannot read is reached through host staging (staging_transport.h); the
  // large-message reduce-scatter then adds its chunks with the device's add. Call before
  // split() so that the derived communicators share it. Without it, buffers are host memory.
  void set_device(backend::Device& device);
  // That device (the CPU backend when none was set): where the layers built on this
  // communicator run their own ops on its buffers.
  backend::Device& device() const;

  int rank() const;
  int size() const;
  const std::string& name() const;
  // This rank's rank in the whole job (for messages).
  int world_rank() const;

  // ---- collectives; P = size(), blocks in rank order --------------------------------------
  // Equal blocks: send [P*b] -> recv [P*b]; block j of send goes to rank j, block i of recv
  // came from rank i. Bytes sent: (P-1)*b*sizeof(T).
  template <CommElement T>
  void all_to_all(std::span<const T> send, std::span<T> recv);
  // The adjoint (and inverse) of all_to_all: the block transpose is an involution, so it is
  // all_to_all itself. dy has the forward's recv shape, dx the forward's send shape.
  template <CommElement T>
  void all_to_all_adjoint(std::span<const T> dy, std::span<T> dx) {
    all_to_all(dy, dx);
  }

  // Uneven blocks: send_counts[j] elements go to rank j (packed in rank order unless
  // send_displs is given), recv_counts[i] come from rank i. recv_counts must equal what the
  // peers send. Bytes sent: sum over j != rank of send_counts[j]*sizeof(T).
  template <CommElement T>
  void all_to_all_v(std::span<const T> send, std::span<const int64_t> send_counts,
                    std::span<T> recv, std::span<const int64_t> recv_counts,
                    std::span<const int64_t> send_displs = {},
                    std::span<const int64_t> recv_displs = {});
  // The adjoint of all_to_all_v(send_counts, recv_counts): the same exchange backwards, i.e.
  // all_to_all_v with the counts swapped. Pass the FORWARD counts.
  template <CommElement T>
  void all_to_all_v_adjoint(std::span<const T> dy, std::span<const int64_t> fwd_send_counts,
                            std::span<T> dx, std::span<const int64_t> fwd_recv_counts) {
    all_to_all_v(dy, fwd_recv_counts, dx, fwd_send_counts);
  }

  // send [b] -> recv [P*b], block i from rank i. Bytes sent: (P-1)*b*sizeof(T).
  template <CommElement T>
  void all_gather(std::span<const T> send, std::span<T> recv);
  // recv_counts[i] elements from rank i, packed in rank order; send.size() == recv_counts[rank].
  // Bytes sent: (P-1)*recv_counts[rank]*sizeof(T).
  template <CommElement T>
  void all_gather_v(std::span<const T> send, std::span<T> recv,
                    std::span<const int64_t> recv_counts);
  // Adjoints: each rank's gathered copy is its own variable, so the gradient of this rank's
  // block is the sum over ranks of their gradient for it, a reduce-scatter.
  template <Summable T>
  void all_gather_adjoint(std::span<const T> dy, std::span<T> dx) {
    reduce_scatter(dy, dx);
  }
  template <Summable T>
  void all_gather_v_adjoint(std::span<const T> dy, std::span<T> dx,
                            std::span<const int64_t> counts) {
    reduce_scatter_v(dy, dx, counts);
  }

  // send [P*b] -> recv [b] = sum over ranks of their block `rank`. Bytes sent: (P-1)*b*sizeof(T).
  template <Summable T>
  void reduce_scatter(std::span<const T> send, std::span<T> recv);
  // send [sum counts] -> recv [counts[rank]]. Bytes sent: (sum counts - counts[rank])*sizeof(T).
  template <Summable T>
  void reduce_scatter_v(std::span<const T> send, std::span<T> recv,
                        std::span<const int64_t> counts);
  template <Summable T>
  void reduce_scatter_adjoint(std::span<const T> dy, std::span<T> dx) {
    all_gather(dy, dx);
  }
  template <Summable T>
  void reduce_scatter_v_adjoint(std::span<const T> dy, std::span<T> dx,
                                std::span<const int64_t> counts) {
    all_gather_v(dy, dx, counts);
  }

  // In place sum over ranks of buf [n]. Bytes sent: 2*(n - s_rank)*sizeof(T) where s_rank is
  // this rank's share of n split as evenly as possible (ring reduce-scatter + all-gather),
  // summed over the pieces of at most kAllReducePieceBytes that it is sent in.
  template <Summable T>
  void all_reduce(std::span<T> buf);
  // The adjoint of the identity (a replicated value used independently on every rank) is the
  // all-reduce; the adjoint of the all-reduce is the identity (nothing to call).
  template <Summable T>
  void identity_adjoint(std::span<T> grad) {
    all_reduce(grad);
  }

  // buf [n] from `root` to every rank. Bytes sent: (P-1)*n*sizeof(T) on root, 0 elsewhere.
  template <CommElement T>
  void broadcast(std::span<T> buf, int root);
  // Sum of send [n] over ranks into recv [n] on root (recv ignored elsewhere, may be empty).
  // Bytes sent: n*sizeof(T) on every rank but root. The adjoint of broadcast.
  template <Summable T>
  void reduce(std::span<const T> send, std::span<T> recv, int root);
  template <Summable T>
  void broadcast_adjoint(std::span<const T> dy, std::span<T> dx, int root) {
    reduce(dy, dx, root);
  }

  // ---- point to point ------------------------------------------------------------------------
  // Non-blocking; the buffer must stay alive and untouched until wait(). `tag` separates
  // concurrent messages between the same pair. Bytes sent: isend n*sizeof(T), irecv 0.
  template <CommElement T>
  [[nodiscard]] Request isend(std::span<const T> buf, int dest, int tag = 0);
  template <CommElement T>
  [[nodiscard]] Request irecv(std::span<T> buf, int source, int tag = 0);
  // Blocking ring shift: send to (rank+k) mod P, receive from (rank-k) mod P. Bytes sent:
  // send.size()*sizeof(T). Its adjoint is shift(-k), i.e. shift_adjoint.
  template <CommElement T>
  void shift(std::span<const T> send, std::span<T> recv, int k = 1);
  template <CommElement T>
  void shift_adjoint(std::span<const T> dy, std::span<T> dx, int k = 1) {
    shift(dy, dx, -k);
  }
  // General blocking exchange: send to dest and receive from source at once.
  template <CommElement T>
  void sendrecv(std::span<const T> send, int dest, std::span<T> recv, int source, int tag = 0);

  void barrier();

  // ---- counters --------------------------------------------------------------------------------
  CommStats stats() const;
  void reset_stats();

 private:
  std::unique_ptr<detail::CommState> s_;
};

}  // namespace seqvit::parallel
