// MPI under parallel::Comm (see mpi_comm.h): MpiTransport, the runtime, abort_all.
#include "parallel/mpi_comm.h"

#include <climits>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"

namespace seqvit::parallel {

namespace {

std::string error_string(int rc) {
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof msg, "code %d", rc);
  return msg;
}

void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) throw TransportError(call, error_string(rc));
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::Byte: return MPI_BYTE;
  }
  return MPI_DATATYPE_NULL;
}

// Counts and displacements as MPI's ints; Comm has checked them against max_count().
void to_ints(std::span<const int64_t> v, std::vector<int>& out) {
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<int>(v[i]);
}

}  // namespace

void check_mpi(int rc, const char* mpi_call, const char* op, const std::string& comm, int rank,
               int size, int world_rank) {
  if (rc == MPI_SUCCESS) return;
  fail_transport(TransportError(mpi_call, error_string(rc)), op, comm, rank, size, world_rank);
}

// ---- MpiTransport -------------------------------------------------------------------------------

MpiTransport::MpiTransport(MPI_Comm comm) : MpiTransport(comm, /*owned=*/false) {}

MpiTransport::MpiTransport(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) fail("MPI is not initialised (create MpiRuntime first)");
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
  c0_.assign(size_, 0);
  d0_.assign(size_, 0);
  c1_.assign(size_, 0);
  d1_.assign(size_, 0);
}

MpiTransport::~MpiTransport() {
  if (!owned_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

int64_t MpiTransport::max_count() const { return INT_MAX; }

std::unique_ptr<Transport> MpiTransport::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
  try {
    return std::unique_ptr<Transport>(new MpiTransport(out, /*owned=*/true));
  } catch (...) {
    MPI_Comm_free(&out);
    throw;
  }
}

void MpiTransport::all_to_all(const void* send, void* recv, int64_t block, DType t) {
  const int b = static_cast<int>(block);
  check(MPI_Alltoall(send, b, mpi_type(t), recv, b, mpi_type(t), comm_), "MPI_Alltoall");
}

void MpiTransport::all_to_all_v(const void* send, std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_displs, void* recv,
                                std::span<const int64_t> recv_counts,
                                std::span<const int64_t> recv_displs, DType t) {
  to_ints(send_counts, c0_);
  to_ints(send_displs, d0_);
  to_ints(recv_counts, c1_);
  to_ints(recv_displs, d1_);
  check(MPI_Alltoallv(send, c0_.data(), d0_.data(), mpi_type(t), recv, c1_.data(), d1_.data(),
                      mpi_type(t), comm_),
        "MPI_Alltoallv");
}

void MpiTransport::all_gather(const void* send, void* recv, int64_t block, DType t) {
  const int b = static_cast<int>(block);
  check(MPI_Allgather(send, b, mpi_type(t), recv, b, mpi_type(t), comm_), "MPI_Allgather");
}

void MpiTransport::all_gather_v(const void* send, void* recv, std::span<const int64_t> counts,
                                DType t) {
  to_ints(counts, c0_);
  for (int i = 0, offset = 0; i < size_; offset += c0_[i++]) d0_[i] = offset;
  check(MPI_Allgatherv(send, c0_[rank_], mpi_type(t), recv, c0_.data(), d0_.data(), mpi_type(t),
                       comm_),
        "MPI_Allgatherv");
}

void MpiTransport::reduce_scatter_sum(const void* send, void* recv, int64_t block, DType t) {
  check(MPI_Reduce_scatter_block(send, recv, static_cast<int>(block), mpi_type(t), MPI_SUM, comm_),
        "MPI_Reduce_scatter_block");
}

void MpiTransport::reduce_scatter_v_sum(const void* send, void* recv,
                                        std::span<const int64_t> counts, DType t) {
  to_ints(counts, c0_);
  check(MPI_Reduce_scatter(send, recv, c0_.data(), mpi_type(t), MPI_SUM, comm_),
        "MPI_Reduce_scatter");
}

void MpiTransport::all_reduce_sum(void* buf, int64_t n, DType t) {
  check(MPI_Allreduce(MPI_IN_PLACE, buf, static_cast<int>(n), mpi_type(t), MPI_SUM, comm_),
        "MPI_Allreduce");
}

void MpiTransport::broadcast(void* buf, int64_t n, int root, DType t) {
  check(MPI_Bcast(buf, static_cast<int>(n), mpi_type(t), root, comm_), "MPI_Bcast");
}

void MpiTransport::reduce_sum(const void* send, void* recv, int64_t n, int root, DType t) {
  check(MPI_Reduce(send, recv, static_cast<int>(n), mpi_type(t), MPI_SUM, root, comm_),
        "MPI_Reduce");
}

void MpiTransport::barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

int64_t MpiTransport::sendrecv(const void* send, int64_t ns, int dest, void* recv, int64_t nr,
                               int source, int tag, DType t) {
  MPI_Status status;
  check(MPI_Sendrecv(send, static_cast<int>(ns), mpi_type(t), dest, tag, recv,
                     static_cast<int>(nr), mpi_type(t), source, tag, comm_, &status),
        "MPI_Sendrecv");
  int got = 0;
  MPI_Get_count(&status, mpi_type(t), &got);
  return got;
}

int MpiTransport::free_slot() {
  if (free_.empty()) {
    transfers_.emplace_back();
    return static_cast<int>(transfers_.size()) - 1;
  }
  const int i = free_.back();
  free_.pop_back();
  return i;
}

int MpiTransport::isend(const void* buf, int64_t n, int dest, int tag, DType t) {
  const int i = free_slot();
  Transfer& x = transfers_[i];
  x = {MPI_REQUEST_NULL, mpi_type(t), static_cast<int>(n), /*recv=*/false};
  const int rc = MPI_Isend(buf, x.posted, x.type, dest, tag, comm_, &x.req);
  if (rc != MPI_SUCCESS) free_.push_back(i);
  check(rc, "MPI_Isend");
  return i;
}

int MpiTransport::irecv(void* buf, int64_t n, int source, int tag, DType t) {
  const int i = free_slot();
  Transfer& x = transfers_[i];
  x = {MPI_REQUEST_NULL, mpi_type(t), static_cast<int>(n), /*recv=*/true};
  const int rc = MPI_Irecv(buf, x.posted, x.type, source, tag, comm_, &x.req);
  if (rc != MPI_SUCCESS) free_.push_back(i);
  check(rc, "MPI_Irecv");
  return i;
}

int64_t MpiTransport::wait(int transfer) {
  Transfer& x = transfers_[transfer];
  const char* call = x.recv ? "MPI_Wait (irecv)" : "MPI_Wait (isend)";
  // A Request destroyed after MPI_Finalize (a bug of its owner) must not call into MPI.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) {
    free_.push_back(transfer);
    throw TransportError(call, "MPI is already finalised");
  }
  MPI_Status status;
  const int rc = MPI_Wait(&x.req, &status);
  return finish(transfer, rc, status, call);
}

std::optional<int64_t> MpiTransport::test(int transfer) {
  Transfer& x = transfers_[transfer];
  MPI_Status status;
  int done = 0;
  const int rc = MPI_Test(&x.req, &done, &status);
  if (rc == MPI_SUCCESS && !done) return std::nullopt;
  return finish(transfer, rc, status, x.recv ? "MPI_Test (irecv)" : "MPI_Test (isend)");
}

// A completed request is MPI_REQUEST_NULL again, also after an error (MPI_ERRORS_RETURN).
int64_t MpiTransport::finish(int transfer, int rc, const MPI_Status& status, const char* call) {
  const Transfer x = transfers_[transfer];
  free_.push_back(transfer);
  check(rc, call);
  if (!x.recv) return x.posted;
  int got = 0;
  MPI_Get_count(&status, x.type, &got);
  return got;
}

Comm mpi_world() { return Comm(std::make_unique<MpiTransport>(MPI_COMM_WORLD), "world"); }

// ---- runtime ------------------------------------------------------------------------------------

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) fail("MPI is already initialised; create one MpiRuntime per process");
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    fail("MPI_Init_thread failed");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    fail("the MPI library provides thread level {}; seqvit needs MPI_THREAD_FUNNELED ({})",
         provided, static_cast<int>(MPI_THREAD_FUNNELED));
  }
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort_all(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace seqvit::parallel
