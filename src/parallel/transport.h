// The transport under parallel::Comm (comm.h): what moves bytes between the ranks of one
// communicator. Comm validates sizes, counts bytes and time, splits large messages and runs the
// ring reduce-scatter; a Transport only executes the primitive it is asked for, with sizes that
// Comm has already checked. The MPI transport is MpiTransport (mpi_comm.h).
//
// Buffers are untyped pointers with an element count and an element type; per-rank blocks are
// contiguous and in rank order; counts and displacements are in elements and never exceed
// max_count(). For MpiTransport the buffers are host memory. A device transport (NCCL) takes
// device pointers and runs every call on the stream it was built with.
//
// Errors: a primitive that the library reports as failed throws TransportError with the
// library's call and message; Comm adds the operation, the communicator and the rank.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/check.h"

namespace seqvit::parallel {

enum class DType { F32, F64, I32, I64, Byte };

class TransportError : public Error {
 public:
  TransportError(std::string call, std::string detail)
      : Error(call + ": " + detail), call_(std::move(call)), detail_(std::move(detail)) {}
  const std::string& call() const { return call_; }      // "MPI_Sendrecv"
  const std::string& detail() const { return detail_; }  // the library's own message
 private:
  std::string call_, detail_;
};

// Throws seqvit::Error in the form users see for a failed transport call: "MPI_Allreduce
// (all_reduce) failed on communicator 'dp' (rank 1 of 4, world rank 5): <the library's message>".
[[noreturn]] void fail_transport(const TransportError& e, std::string_view op,
                                 const std::string& comm, int rank, int size, int world_rank);

// One communicator. Every call is collective over it except isend/irecv/sendrecv and the
// completion of transfers. Sums are the only reductions: they are all Comm needs.
class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int world_rank() const = 0;  // the rank in the whole job, for messages
  virtual int64_t max_count() const = 0;  // the largest count or displacement one call takes

  // Ranks with the same color (>= 0) form one new communicator, ordered by key.
  virtual std::unique_ptr<Transport> split(int color, int key) const = 0;

  // send [P*block] -> recv [P*block], block j to rank j.
  virtual void all_to_all(const void* send, void* recv, int64_t block, DType t) = 0;
  // send_counts[j] elements at send_displs[j] go to rank j; recv_counts[i] from rank i land at
  // recv_displs[i]. All four have one entry per rank.
  virtual void all_to_all_v(const void* send, std::span<const int64_t> send_counts,
                            std::span<const int64_t> send_displs, void* recv,
                            std::span<const int64_t> recv_counts,
                            std::span<const int64_t> recv_displs, DType t) = 0;
  // send [block] -> recv [P*block].
  virtual void all_gather(const void* send, void* recv, int64_t block, DType t) = 0;
  // send [counts[rank]] -> recv [sum counts], packed in rank order.
  virtual void all_gather_v(const void* send, void* recv, std::span<const int64_t> counts,
                            DType t) = 0;
  // send [P*block] -> recv [block], the sum over ranks of their block `rank`.
  virtual void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType t) = 0;
  // send [sum counts], packed in rank order -> recv [counts[rank]].
  virtual void reduce_scatter_v_sum(const void* send, void* recv,
                                    std::span<const int64_t> counts, DType t) = 0;
  // In place: buf [n] = its sum over ranks.
  virtual void all_reduce_sum(void* buf, int64_t n, DType t) = 0;
  virtual void broadcast(void* buf, int64_t n, int root, DType t) = 0;
  // recv [n] on root = the sum of send [n] over ranks; recv is null elsewhere.
  virtual void reduce_sum(const void* send, void* recv, int64_t n, int root, DType t) = 0;
  virtual void barrier() = 0;

  // Blocking exchange with two peers; returns the number of elements received (at most nr).
  virtual int64_t sendrecv(const void* send, int64_t ns, int dest, void* recv, int64_t nr,
                           int source, int tag, DType t) = 0;

  // Non-blocking transfers. isend/irecv post one and return its handle (>= 0); the buffer must
  // stay untouched until it completes. wait() and a test() that finds it complete release the
  // handle (also when they throw) and return the number of elements transferred: received for
  // an irecv (at most posted), posted for an isend. test() never blocks, returns nullopt while
  // the transfer is pending and lets the library progress it (MPI moves a large message only
  // inside its calls).
  virtual int isend(const void* buf, int64_t n, int dest, int tag, DType t) = 0;
  virtual int irecv(void* buf, int64_t n, int source, int tag, DType t) = 0;
  virtual int64_t wait(int transfer) = 0;
  virtual std::optional<int64_t> test(int transfer) = 0;
};

}  // namespace seqvit::parallel
