// The error form shared by every transport (see transport.h).
#include "parallel/transport.h"

namespace seqvit::parallel {

void fail_transport(const TransportError& e, std::string_view op, const std::string& comm,
                    int rank, int size, int world_rank) {
  fail("{} ({}) failed on communicator '{}' (rank {} of {}, world rank {}): {}", e.call(), op,
       comm, rank, size, world_rank, e.detail());
}

}  // namespace seqvit::parallel
