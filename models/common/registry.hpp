#pragma once
// One registry per extension point, keyed by the name used in YAML. Entries are added by explicit
// registration calls (no static-initialiser magic); an unknown name fails with the list of valid
// names, which is also what `moesim list <kind>` prints.
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

class UnknownNameError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

template <class Entry>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  void add(const std::string& name, std::string doc, Entry entry) {
    if (entries_.contains(name)) throw std::logic_error(kind_ + " \"" + name + "\" registered twice");
    entries_.emplace(name, Item{std::move(doc), std::move(entry)});
  }

  [[nodiscard]] bool contains(const std::string& name) const { return entries_.contains(name); }

  [[nodiscard]] const Entry& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      throw UnknownNameError("unknown " + kind_ + " \"" + name + "\"; valid: " + joined_names());
    }
    return it->second.entry;
  }

  [[nodiscard]] const std::string& doc(const std::string& name) const { return entries_.at(name).doc; }

  /// Names in sorted order.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& [name, item] : entries_) out.push_back(name);
    return out;
  }

  [[nodiscard]] std::string joined_names() const {
    std::string out;
    for (const auto& [name, item] : entries_) {
      if (!out.empty()) out += ", ";
      out += name;
    }
    return out;
  }

  [[nodiscard]] const std::string& kind() const { return kind_; }

 private:
  struct Item {
    std::string doc;
    Entry entry;
  };
  std::string kind_;
  std::map<std::string, Item> entries_;
};

}  // namespace moesim
