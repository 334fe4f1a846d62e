#pragma once
// Declarative config schema: each field is declared once, with its name, type, default (the
// struct's member initialiser), unit, doc and validator. The same declaration drives parsing,
// validation, dumping of the resolved config and `moesim describe`.
//
//   void describe(Schema<ServingConfig>& s) {
//     s.field("max_num_seqs", &ServingConfig::max_num_seqs).unit("sequences").min(1)
//         .doc("most sequences in one step (vLLM --max-num-seqs)");
//   }
//
// Parsing rejects unknown keys (with a "did you mean"), reports type and range errors with
// file:line and key path, and collects every error instead of stopping at the first.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "sim/config/diagnostics.hpp"

namespace moesim {

class Catalog;

/// Where each key path came from, and the sink errors go to.
class ParseContext {
 public:
  /// overrides: key path -> the --set text that set it (may be null).
  ParseContext(std::string origin, std::vector<Diagnostic>& sink,
               const std::map<std::string, std::string>* overrides = nullptr, const Catalog* catalog = nullptr)
      : origin_(std::move(origin)), sink_(sink), overrides_(overrides), catalog_(catalog) {}

  void record(const std::string& path, const YAML::Node& node);
  void error(const YAML::Node& at, const std::string& path, std::string message);
  /// Error at a path recorded during parsing (falls back to the nearest recorded parent).
  void error_at(const std::string& path, std::string message);

  [[nodiscard]] const std::string& origin() const { return origin_; }
  [[nodiscard]] const Catalog* catalog() const { return catalog_; }
  [[nodiscard]] std::vector<Diagnostic>& sink() { return sink_; }
  [[nodiscard]] std::size_t error_count() const { return sink_.size(); }

 private:
  [[nodiscard]] std::optional<std::string> override_for(const std::string& path) const;
  Diagnostic make(int line, const std::string& path, std::string message) const;

  std::string origin_;
  std::vector<Diagnostic>& sink_;
  const std::map<std::string, std::string>* overrides_;
  const Catalog* catalog_;
  std::map<std::string, int> lines_;
};

[[nodiscard]] inline std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

/// Text of a node for error messages: scalars as written, others by their kind.
[[nodiscard]] std::string describe_node(const YAML::Node& node);

// ---- scalar codecs -------------------------------------------------------------------------------

/// Enumerations parsed from their YAML names.
template <class E>
struct EnumNames;  // specialise: static const std::vector<std::pair<std::string, E>>& get();

template <class V>
struct Codec;

template <>
struct Codec<bool> {
  static constexpr const char* type = "bool";
  static bool decode(const YAML::Node& n, bool& out, std::string& err);
  static YAML::Node encode(bool v) { return YAML::Node(v); }
};
template <>
struct Codec<int> {
  static constexpr const char* type = "int";
  static bool decode(const YAML::Node& n, int& out, std::string& err);
  static YAML::Node encode(int v) { return YAML::Node(v); }
};
template <>
struct Codec<std::int64_t> {
  static constexpr const char* type = "int";
  static bool decode(const YAML::Node& n, std::int64_t& out, std::string& err);
  static YAML::Node encode(std::int64_t v) { return YAML::Node(v); }
};
template <>
struct Codec<std::uint64_t> {
  static constexpr const char* type = "uint";
  static bool decode(const YAML::Node& n, std::uint64_t& out, std::string& err);
  static YAML::Node encode(std::uint64_t v) { return YAML::Node(v); }
};
template <>
struct Codec<double> {
  static constexpr const char* type = "float";
  static bool decode(const YAML::Node& n, double& out, std::string& err);
  static YAML::Node encode(double v);
};
template <>
struct Codec<std::string> {
  static constexpr const char* type = "string";
  static bool decode(const YAML::Node& n, std::string& out, std::string& err);
  static YAML::Node encode(const std::string& v) { return YAML::Node(v); }
};
/// A mapping of names to non-negative weights, e.g. a domain mix {programming: 0.5, cooking: 0.5}.
template <>
struct Codec<std::map<std::string, double>> {
  static constexpr const char* type = "map";
  static bool decode(const YAML::Node& n, std::map<std::string, double>& out, std::string& err);
  static YAML::Node encode(const std::map<std::string, double>& v);
};
/// A list of integers, e.g. expert ids.
template <>
struct Codec<std::vector<int>> {
  static constexpr const char* type = "list";
  static bool decode(const YAML::Node& n, std::vector<int>& out, std::string& err);
  static YAML::Node encode(const std::vector<int>& v);
};
/// A list of names, e.g. the trace groups to keep.
template <>
struct Codec<std::vector<std::string>> {
  static constexpr const char* type = "list";
  static bool decode(const YAML::Node& n, std::vector<std::string>& out, std::string& err);
  static YAML::Node encode(const std::vector<std::string>& v);
};
/// A mapping of names to names, e.g. trace group -> domain.
template <>
struct Codec<std::map<std::string, std::string>> {
  static constexpr const char* type = "map";
  static bool decode(const YAML::Node& n, std::map<std::string, std::string>& out, std::string& err);
  static YAML::Node encode(const std::map<std::string, std::string>& v);
};
template <class E>
  requires std::is_enum_v<E>
struct Codec<E> {
  static constexpr const char* type = "enum";
  static bool decode(const YAML::Node& n, E& out, std::string& err) {
    std::string s;
    if (!Codec<std::string>::decode(n, s, err)) return false;
    std::vector<std::string> names;
    for (const auto& [name, value] : EnumNames<E>::get()) {
      if (name == s) {
        out = value;
        return true;
      }
      names.push_back(name);
    }
    err = "must be one of: " + join(names) + " (got \"" + s + "\")";
    return false;
  }
  static YAML::Node encode(E v) {
    for (const auto& [name, value] : EnumNames<E>::get())
      if (value == v) return YAML::Node(name);
    return YAML::Node("?");
  }
};

template <class V>
struct Rules {
  std::optional<double> min, max, greater_than;
  std::function<std::vector<std::string>()> allowed;  ///< for strings: the valid names
  std::string allowed_hint;                           ///< what the names are ("model cards", ...)

  /// Empty when v is valid, else the message.
  [[nodiscard]] std::string check(const V& v) const {
    if constexpr (std::is_arithmetic_v<V> && !std::is_same_v<V, bool>) {
      std::ostringstream got;
      got << v;
      return check_number(static_cast<double>(v), got.str());
    }
    if constexpr (std::is_same_v<V, std::string>) {
      if (allowed) {
        const auto names = allowed();
        for (const auto& n : names)
          if (n == v) return {};
        std::string msg = "unknown value \"" + v + "\"";
        if (auto near = closest_match(v, names); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
        return msg + "; must be one of: " + join(names);
      }
    }
    return {};
  }
  /// The range rules applied to a number; `got` is how the value was written.
  [[nodiscard]] std::string check_number(double x, const std::string& got) const {
    if (greater_than && max && !(x > *greater_than && x <= *max))
      return "must be in (" + num(*greater_than) + ", " + num(*max) + "] (got " + got + ")";
    if (greater_than && !(x > *greater_than)) return "must be > " + num(*greater_than) + " (got " + got + ")";
    if (min && !(x >= *min)) {
      if (max) return "must be in [" + num(*min) + ", " + num(*max) + "] (got " + got + ")";
      return "must be >= " + num(*min) + " (got " + got + ")";
    }
    if (max && !(x <= *max)) {
      if (min) return "must be in [" + num(*min) + ", " + num(*max) + "] (got " + got + ")";
      return "must be <= " + num(*max) + " (got " + got + ")";
    }
    return {};
  }
  static std::string num(double x) {
    // Limits read as written: 10000000, not 1e+07.
    if (std::fabs(x) < 1e15 && x == std::trunc(x)) return std::to_string(static_cast<long long>(x));
    std::ostringstream s;
    s << x;
    return s.str();
  }
};

// ---- schema ------------------------------------------------------------------------------------

template <class T>
class Schema;

/// Cross-field validation of one struct: errors name keys relative to the struct.
class Checker {
 public:
  Checker(ParseContext& ctx, std::string path) : ctx_(ctx), path_(std::move(path)) {}
  void error(const std::string& key, std::string message) { ctx_.error_at(join_path(path_, key), std::move(message)); }
  [[nodiscard]] ParseContext& context() { return ctx_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  ParseContext& ctx_;
  std::string path_;
};

template <class T>
struct FieldDef {
  std::string name;
  std::string type;
  std::string unit;
  std::string doc;
  std::string constraint;  ///< human-readable validator, for docs
  bool required = false;
  std::function<void(const YAML::Node&, T&, ParseContext&, const std::string&)> parse;
  std::function<YAML::Node(const T&)> dump;
  /// Sections: the documentation rows of the nested fields.
  std::function<void(std::vector<struct FieldDoc>&, const std::string&)> document_children;
};

/// One row of `moesim describe`: a field's path, type, default, unit, constraint and doc.
struct FieldDoc {
  std::string path, type, default_value, unit, constraint, doc;
};

/// Builder returned by Schema::field to attach unit, doc and validators.
template <class T, class V>
class FieldBuilder {
 public:
  FieldBuilder(FieldDef<T>& def, std::shared_ptr<Rules<V>> rules) : def_(def), rules_(std::move(rules)) {}
  FieldBuilder& unit(std::string u) { def_.unit = std::move(u); return *this; }
  FieldBuilder& doc(std::string d) { def_.doc = std::move(d); return *this; }
  FieldBuilder& required() { def_.required = true; return *this; }
  FieldBuilder& min(double v) { rules_->min = v; add_constraint(">= " + Rules<V>::num(v)); return *this; }
  FieldBuilder& max(double v) { rules_->max = v; add_constraint("<= " + Rules<V>::num(v)); return *this; }
  FieldBuilder& greater_than(double v) { rules_->greater_than = v; add_constraint("> " + Rules<V>::num(v)); return *this; }
  FieldBuilder& one_of(std::function<std::vector<std::string>()> names) {
    rules_->allowed = std::move(names);
    add_constraint("one of: " + join(rules_->allowed()));
    return *this;
  }

 private:
  void add_constraint(const std::string& c) { def_.constraint += (def_.constraint.empty() ? "" : ", ") + c; }
  FieldDef<T>& def_;
  std::shared_ptr<Rules<V>> rules_;
};

template <class T>
void describe(Schema<T>& s);  // one overload per config struct

template <class T>
class Schema {
 public:
  /// A scalar (bool, int, float, string, enum) field.
  template <class V>
  FieldBuilder<T, V> field(std::string name, V T::*member) {
    auto rules = std::make_shared<Rules<V>>();
    FieldDef<T> def;
    def.name = std::move(name);
    def.type = Codec<V>::type;
    if constexpr (std::is_enum_v<V>) {
      std::vector<std::string> names;
      for (const auto& [n, v] : EnumNames<V>::get()) names.push_back(n);
      def.constraint = "one of: " + join(names);
    }
    def.parse = [member, rules](const YAML::Node& node, T& obj, ParseContext& ctx, const std::string& path) {
      V value{};
      std::string err;
      if (!Codec<V>::decode(node, value, err)) {
        // An integer too large for its type, or written as 1e12, is reported against the field's
        // limit when it has one: "must be in [1, 10000000] (got 1e12)".
        if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
          double x = 0;
          std::string ignored;
          if ((rules->min || rules->max) && Codec<double>::decode(node, x, ignored) && x == std::trunc(x))
            if (auto msg = rules->check_number(x, node.Scalar()); !msg.empty()) err = msg;
        }
        ctx.error(node, path, err);
        return;
      }
      if (auto msg = rules->check(value); !msg.empty()) {
        ctx.error(node, path, msg);
        return;
      }
      obj.*member = value;
    };
    def.dump = [member](const T& obj) { return Codec<V>::encode(obj.*member); };
    fields_.push_back(std::move(def));
    return FieldBuilder<T, V>(fields_.back(), rules);
  }

  /// A nested struct, described by its own describe(Schema<S>&).
  template <class S>
  FieldDef<T>& section(std::string name, S T::*member, std::string doc) {
    auto sub = std::make_shared<Schema<S>>();
    describe(*sub);
    FieldDef<T> def;
    def.name = std::move(name);
    def.type = "section";
    def.doc = std::move(doc);
    def.parse = [member, sub](const YAML::Node& node, T& obj, ParseContext& ctx, const std::string& path) {
      sub->parse(node, obj.*member, ctx, path);
    };
    def.dump = [member, sub](const T& obj) { return sub->dump(obj.*member); };
    def.document_children = [sub](std::vector<FieldDoc>& rows, const std::string& prefix) { sub->document(rows, prefix); };
    fields_.push_back(std::move(def));
    return fields_.back();
  }

  /// Appends one row per field (recursing into sections), defaults from a default-constructed T.
  void document(std::vector<FieldDoc>& rows, const std::string& prefix) const {
    const T defaults{};
    for (const auto& def : fields_) {
      const std::string path = join_path(prefix, def.name);
      if (def.document_children) {
        def.document_children(rows, path);
        continue;
      }
      std::string value;
      const YAML::Node node = def.dump(defaults);
      if (node.IsScalar()) value = node.Scalar().empty() ? "\"\"" : node.Scalar();
      else if (node.IsMap() && node["card"]) value = node["card"].Scalar().empty() ? "(derived)" : node["card"].Scalar();
      if (def.required) value = "(required)";
      rows.push_back({path, def.type, value, def.unit, def.constraint, def.doc});
    }
  }

  /// A field with its own parse/dump (catalog card references, maps).
  FieldDef<T>& custom(FieldDef<T> def) {
    fields_.push_back(std::move(def));
    return fields_.back();
  }

  /// Cross-field validation, run when the struct parsed without errors.
  void check(std::function<void(const T&, Checker&)> fn) { checks_.push_back(std::move(fn)); }

  struct ParseOptions {
    bool require_all = false;          ///< every field must be present (catalog cards)
    std::set<std::string> extra_keys;  ///< keys handled by the caller, not unknown
  };

  void parse(const YAML::Node& node, T& obj, ParseContext& ctx, const std::string& path) const {
    parse(node, obj, ctx, path, ParseOptions{});
  }

  void parse(const YAML::Node& node, T& obj, ParseContext& ctx, const std::string& path,
             const ParseOptions& options) const {
    ctx.record(path, node);
    if (!node.IsMap()) {
      if (node.IsNull() && !options.require_all && !any_required()) return;  // "key:" with nothing: defaults
      ctx.error(node, path, "expected a mapping of keys (got " + describe_node(node) + ")");
      return;
    }
    const std::size_t errors_before = ctx.error_count();
    std::set<std::string> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.Scalar();
      const std::string key_path = join_path(path, key);
      if (!seen.insert(key).second) {
        ctx.error(it->first, key_path, "duplicate key");
        continue;
      }
      if (options.extra_keys.contains(key)) continue;
      const FieldDef<T>* def = find(key);
      if (def == nullptr) {
        std::string msg = "unknown key \"" + key + "\"";
        if (auto near = closest_match(key, names()); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
        msg += "; allowed keys: " + join(names());
        ctx.error(it->first, key_path, msg);
        continue;
      }
      ctx.record(key_path, it->second);
      def->parse(it->second, obj, ctx, key_path);
    }
    for (const auto& def : fields_) {
      if ((def.required || options.require_all) && !seen.contains(def.name))
        ctx.error(node, path, "missing required key \"" + def.name + "\"");
    }
    if (ctx.error_count() == errors_before) {
      Checker checker(ctx, path);
      for (const auto& fn : checks_) fn(obj, checker);
    }
  }

  [[nodiscard]] YAML::Node dump(const T& obj) const {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& def : fields_) out[def.name] = def.dump(obj);
    return out;
  }

  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& def : fields_) out.push_back(def.name);
    return out;
  }
  [[nodiscard]] const std::vector<FieldDef<T>>& fields() const { return fields_; }
  [[nodiscard]] const FieldDef<T>* find(const std::string& key) const {
    for (const auto& def : fields_)
      if (def.name == key) return &def;
    return nullptr;
  }

 private:
  [[nodiscard]] bool any_required() const {
    for (const auto& def : fields_)
      if (def.required) return true;
    return false;
  }
  std::vector<FieldDef<T>> fields_;
  std::vector<std::function<void(const T&, Checker&)>> checks_;
};

/// The schema of T, built once.
template <class T>
const Schema<T>& schema_of() {
  static const Schema<T> schema = [] {
    Schema<T> s;
    describe(s);
    return s;
  }();
  return schema;
}

}  // namespace moesim
