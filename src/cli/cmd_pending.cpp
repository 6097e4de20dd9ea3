// Subcommands whose capability is not built yet: they say so plainly and exit non-zero.
// Each moves to its own file when its issue lands.
#include "cli/commands.hpp"
#include "core/error.hpp"

namespace loftq {

int cmd_export(const Config&) { LOFTQ_THROW(NotImplemented, "loftq export: not implemented yet (issue #6)"); }
int cmd_run(const Config&) { LOFTQ_THROW(NotImplemented, "loftq run: not implemented yet (issues #5, #6)"); }
int cmd_verify(const Config&) { LOFTQ_THROW(NotImplemented, "loftq verify: not implemented yet (issue #6)"); }

}  // namespace loftq
