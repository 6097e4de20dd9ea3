// Checks that the files a job writes can neither overwrite nor delete the files it reads or
// another file it writes: the model folder (and every file in it, through symlinks too), the run
// file, the --log-json file and the output folder. Paths are compared by identity (canonical
// path, symlinks resolved, and the same inode for files that exist), never by spelling, so
// "out/../model", a symlink to the model folder or a hard link to the run file are all caught.
// Pure path logic: no MPI, nothing created or removed.
#pragma once

#include <optional>
#include <string>

namespace loftq {

// The paths one job uses; an empty string means "not used by this job".
struct JobPaths {
    std::string model;   // input checkpoint folder (read)
    std::string work;    // run file (written by quantize, read by export)
    std::string log;     // per-matrix JSON log (written)
    std::string output;  // output folder (replaced as a whole)
};

// The first conflict found: `setting` ("output", "work", "log-json") would destroy or be
// destroyed by `other` ("model", "work", "output"); `relation` says how, in words such as
// "is the same as", "is inside", "contains".
struct PathConflict {
    std::string setting, path;
    std::string relation;
    std::string other, other_path;
};

// Refused: output equal to, inside or containing the model folder or any of its files; work
// inside (or equal to) the model folder or one of its files, or inside the output folder; log
// equal to the work file, inside or equal to the output folder, or inside the model folder.
std::optional<PathConflict> find_path_conflict(const JobPaths& paths);

// Whether `inner` is `outer` or lies below it, by canonical path components (so /a/bc is not
// inside /a/b). Both are made canonical first (nonexistent tails are kept as spelled).
bool path_is_within(const std::string& inner, const std::string& outer);

}  // namespace loftq
