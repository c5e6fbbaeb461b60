// MPI under parallel::Comm (comm.h): the MPI transport, the MPI runtime and the job-wide abort.
// Only the code that starts MPI includes this header (seqvit's commands, the MPI tests' main and
// harness, the benchmarks); everything else talks to a Comm and never sees <mpi.h>.
//
// MPI is initialised with MPI_THREAD_FUNNELED: only the main thread communicates. Every
// communicator has MPI_ERRORS_RETURN set, so a failing call returns its code, which becomes a
// TransportError and, through Comm, a seqvit::Error naming the operation and the rank.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/transport.h"

namespace seqvit::parallel {

// MPI_Init_thread(FUNNELED) on construction and MPI_Finalize on destruction, once per process.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
};

// MPI_COMM_WORLD as a Comm named "world". MPI must be initialised (MpiRuntime).
Comm mpi_world();

// Ends every rank of the job (MPI_Abort on MPI_COMM_WORLD) after a fatal error on one rank, so
// that the others do not wait forever in a collective. Prints nothing itself.
[[noreturn]] void abort_all(int code);

// Converts an MPI return code into seqvit::Error: "MPI_Allreduce (all_reduce) failed on
// communicator 'dp' (rank 1 of 4, world rank 5): <MPI's message>". Exposed for tests.
void check_mpi(int rc, const char* mpi_call, const char* op, const std::string& comm, int rank,
               int size, int world_rank);

// One MPI communicator as a Transport (see transport.h): each primitive is the MPI call of the
// same name; counts are MPI's int. Transfers are MPI requests in slots that are reused, so
// posting one allocates nothing once as many have been pending at once before.
class MpiTransport final : public Transport {
 public:
  // Wraps `comm` (not owned: never freed) and sets MPI_ERRORS_RETURN on it.
  explicit MpiTransport(MPI_Comm comm);
  ~MpiTransport() override;  // frees a communicator made by split()
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank() const override { return world_rank_; }
  int64_t max_count() const override;
  std::unique_ptr<Transport> split(int color, int key) const override;

  void all_to_all(const void* send, void* recv, int64_t block, DType t) override;
  void all_to_all_v(const void* send, std::span<const int64_t> send_counts,
                    std::span<const int64_t> send_displs, void* recv,
                    std::span<const int64_t> recv_counts, std::span<const int64_t> recv_displs,
                    DType t) override;
  void all_gather(const void* send, void* recv, int64_t block, DType t) override;
  void all_gather_v(const void* send, void* recv, std::span<const int64_t> counts,
                    DType t) override;
  void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType t) override;
  void reduce_scatter_v_sum(const void* send, void* recv, std::span<const int64_t> counts,
                            DType t) override;
  void all_reduce_sum(void* buf, int64_t n, DType t) override;
  void broadcast(void* buf, int64_t n, int root, DType t) override;
  void reduce_sum(const void* send, void* recv, int64_t n, int root, DType t) override;
  void barrier() override;
  int64_t sendrecv(const void* send, int64_t ns, int dest, void* recv, int64_t nr, int source,
                   int tag, DType t) override;
  int isend(const void* buf, int64_t n, int dest, int tag, DType t) override;
  int irecv(void* buf, int64_t n, int source, int tag, DType t) override;
  int64_t wait(int transfer) override;
  std::optional<int64_t> test(int transfer) override;

 private:
  MpiTransport(MPI_Comm comm, bool owned);
  struct Transfer {
    MPI_Request req = MPI_REQUEST_NULL;
    MPI_Datatype type = MPI_DATATYPE_NULL;
    int posted = 0;  // elements
    bool recv = false;
  };
  int free_slot();
  // Releases the slot of a completed (or failed) transfer and returns its element count.
  int64_t finish(int transfer, int rc, const MPI_Status& status, const char* call);

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::vector<int> c0_, d0_, c1_, d1_;  // scratch, so that the v-ops do not allocate per call
  std::vector<Transfer> transfers_;
  std::vector<int> free_;  // indices of free slots in transfers_
};

}  // namespace seqvit::parallel
