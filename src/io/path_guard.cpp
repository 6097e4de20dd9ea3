#include "io/path_guard.hpp"

#include <filesystem>
#include <vector>

namespace fs = std::filesystem;

namespace loftq {
namespace {

// Absolute, symlinks resolved as far as the path exists, "." and ".." removed.
fs::path canonical_of(const std::string& p) {
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec);
    if (ec) return fs::path(p).lexically_normal();
    fs::path c = fs::weakly_canonical(abs, ec);
    if (ec) return abs.lexically_normal();
    // weakly_canonical keeps a trailing separator ("out/"): drop it so components compare.
    if (!c.has_filename() && c.has_parent_path() && c != c.root_path()) c = c.parent_path();
    return c;
}

bool within(const fs::path& inner, const fs::path& outer) {
    auto i = inner.begin();
    for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
        if (o->empty()) continue;  // a trailing "" component
        if (i == inner.end() || *i != *o) return false;
    }
    return true;
}

// The same file or folder: one canonical path, or (hard links, bind mounts) one inode.
bool same(const fs::path& a, const fs::path& b) {
    if (a == b) return true;
    std::error_code ec;
    return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec) && !ec;
}

// Where the model's files really are: a Hugging Face cache folder holds symlinks into blobs/.
std::vector<fs::path> model_file_targets(const fs::path& model) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::is_directory(model, ec)) return out;
    for (fs::directory_iterator it(model, ec), end; !ec && it != end; it.increment(ec))
        out.push_back(canonical_of(it->path().string()));
    return out;
}

}  // namespace

bool path_is_within(const std::string& inner, const std::string& outer) {
    return within(canonical_of(inner), canonical_of(outer));
}

std::optional<PathConflict> find_path_conflict(const JobPaths& p) {
    const fs::path model = p.model.empty() ? fs::path() : canonical_of(p.model);
    const fs::path work = p.work.empty() ? fs::path() : canonical_of(p.work);
    const fs::path log = p.log.empty() ? fs::path() : canonical_of(p.log);
    const fs::path output = p.output.empty() ? fs::path() : canonical_of(p.output);
    const std::vector<fs::path> model_files = model.empty() ? std::vector<fs::path>{} : model_file_targets(model);
    auto conflict = [](const char* setting, const std::string& path, const char* relation, const char* other,
                       const std::string& other_path) {
        return PathConflict{setting, path, relation, other, other_path};
    };
    // A file that is the model folder, lies inside it, or is one of its files (wherever they link to).
    auto in_model = [&](const fs::path& f) -> const char* {
        if (same(f, model)) return "is the model folder";
        if (within(f, model)) return "is inside the model folder";
        for (const auto& m : model_files)
            if (same(f, m)) return "is a file of the model folder";
        return nullptr;
    };

    if (!output.empty() && !model.empty()) {
        // The output folder is replaced as a whole: it must neither hold nor be held by the model.
        if (same(output, model)) return conflict("output", p.output, "is the model folder", "model", p.model);
        if (within(output, model)) return conflict("output", p.output, "is inside the model folder", "model", p.model);
        if (within(model, output)) return conflict("output", p.output, "contains the model folder", "model", p.model);
        for (const auto& m : model_files)
            if (within(m, output))
                return conflict("output", p.output, "contains a file of the model folder", "model", p.model);
    }
    if (!work.empty()) {
        if (!model.empty())
            if (const char* r = in_model(work)) return conflict("work", p.work, r, "model", p.model);
        // Replacing the output folder would delete a run file inside it.
        if (!output.empty() && (same(work, output) || within(work, output)))
            return conflict("work", p.work, "is inside the output folder", "output", p.output);
    }
    if (!log.empty()) {
        if (!work.empty() && same(log, work)) return conflict("log-json", p.log, "is the run file", "work", p.work);
        if (!model.empty())
            if (const char* r = in_model(log)) return conflict("log-json", p.log, r, "model", p.model);
        if (!output.empty() && (same(log, output) || within(log, output)))
            return conflict("log-json", p.log, "is inside the output folder", "output", p.output);
    }
    return std::nullopt;
}

}  // namespace loftq
