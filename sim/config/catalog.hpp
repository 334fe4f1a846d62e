#pragma once
// Catalog cards: one YAML file per model, GPU or interconnect, under
//   <home>/models/llm/cards, <home>/models/gpu/cards, <home>/models/network/cards.
// A card sets every field of its spec and says where each number comes from: every field other
// than name and display_name appears in exactly one of `sources` (a citation) or `estimates`
// (why it is an estimate). A card that breaks this does not load.
//
// A scenario names a card (`model: mixtral-8x7b`) or names one and overrides fields
// (`model: {card: mixtral-8x7b, num_layers: 4}`).
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/gpu/gpu_spec.hpp"
#include "models/llm/model_spec.hpp"
#include "models/network/interconnect_spec.hpp"
#include "sim/config/schema.hpp"

namespace moesim {

template <class S>
struct CardTraits;
template <>
struct CardTraits<ModelSpec> {
  static constexpr const char* kind = "model";
  static constexpr const char* plural = "models";
  static constexpr const char* folder = "models/llm/cards";
};
template <>
struct CardTraits<GpuSpec> {
  static constexpr const char* kind = "gpu";
  static constexpr const char* plural = "gpus";
  static constexpr const char* folder = "models/gpu/cards";
};
template <>
struct CardTraits<InterconnectSpec> {
  static constexpr const char* kind = "interconnect";
  static constexpr const char* plural = "interconnects";
  static constexpr const char* folder = "models/network/cards";
};

template <>
struct EnumNames<DType> {
  static const std::vector<std::pair<std::string, DType>>& get();
};
template <>
struct EnumNames<AttentionKind> {
  static const std::vector<std::pair<std::string, AttentionKind>>& get();
};
template <>
struct EnumNames<GateScoring> {
  static const std::vector<std::pair<std::string, GateScoring>>& get();
};

void describe(Schema<ModelSpec>& s);
void describe(Schema<GpuSpec>& s);
void describe(Schema<InterconnectSpec>& s);

/// A scenario's reference to a card, with the card's spec after overrides.
template <class S>
struct CardRef {
  std::string card;  ///< card name; may be set as a default before parsing
  S spec{};
  bool loaded = false;
};

class Catalog {
 public:
  explicit Catalog(std::filesystem::path home) : home_(std::move(home)) {}

  [[nodiscard]] const std::filesystem::path& home() const { return home_; }
  template <class S>
  [[nodiscard]] std::filesystem::path folder() const {
    return home_ / CardTraits<S>::folder;
  }
  template <class S>
  [[nodiscard]] std::vector<std::string> names() const {
    return card_names(folder<S>());
  }
  /// Loads and checks one card; problems go to `sink` (with the card's file and line).
  template <class S>
  [[nodiscard]] std::optional<S> load(const std::string& name, std::vector<Diagnostic>& sink) const;

 private:
  static std::vector<std::string> card_names(const std::filesystem::path& dir);
  /// Parses the file; on a YAML syntax error adds a diagnostic and returns nullopt.
  static std::optional<YAML::Node> read_yaml(const std::filesystem::path& file, std::vector<Diagnostic>& sink);
  static void check_provenance(const YAML::Node& root, const std::vector<std::string>& fields, ParseContext& ctx);

  std::filesystem::path home_;
};

/// Resolves the catalog home: explicit path, else $MOESIM_HOME, else the source tree it was built from.
[[nodiscard]] std::filesystem::path default_catalog_home();

/// Loads ref.card into ref.spec (no overrides); errors at `path`, located at `at` if given.
template <class S>
void load_card(CardRef<S>& ref, ParseContext& ctx, const std::string& path, const YAML::Node* at);

/// A scenario field that names a card, optionally with field overrides.
template <class T, class S>
FieldDef<T>& card_field(Schema<T>& schema, std::string name, CardRef<S> T::*member, std::string doc);

// ---- implementation ----------------------------------------------------------------------------

template <class S>
std::optional<S> Catalog::load(const std::string& name, std::vector<Diagnostic>& sink) const {
  const auto file = folder<S>() / (name + ".yaml");
  const std::size_t before = sink.size();
  auto root = read_yaml(file, sink);
  if (!root) return std::nullopt;
  ParseContext ctx(file.string(), sink);
  S spec{};
  typename Schema<S>::ParseOptions options;
  options.require_all = true;
  options.extra_keys = {"sources", "estimates"};
  schema_of<S>().parse(*root, spec, ctx, "", options);
  if (root->IsMap()) {
    if ((*root)["name"] && (*root)["name"].IsScalar() && (*root)["name"].Scalar() != name)
      ctx.error((*root)["name"], "name", "must equal the file name \"" + name + "\" (got \"" + (*root)["name"].Scalar() + "\")");
    std::vector<std::string> fields;
    for (const auto& f : schema_of<S>().fields())
      if (f.name != "name" && f.name != "display_name") fields.push_back(f.name);
    check_provenance(*root, fields, ctx);
  }
  if (sink.size() != before) return std::nullopt;
  return spec;
}

template <class S>
void load_card(CardRef<S>& ref, ParseContext& ctx, const std::string& path, const YAML::Node* at) {
  const Catalog* catalog = ctx.catalog();
  const auto available = catalog->names<S>();
  bool known = false;
  for (const auto& n : available) known = known || n == ref.card;
  if (!known) {
    std::string msg = std::string("unknown ") + CardTraits<S>::kind + " card \"" + ref.card + "\"";
    if (auto near = closest_match(ref.card, available); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
    msg += "; available in " + catalog->folder<S>().string() + ": " + join(available);
    if (at != nullptr) ctx.error(*at, path, msg);
    else ctx.error_at(path, msg);
    return;
  }
  if (auto spec = catalog->load<S>(ref.card, ctx.sink())) {
    ref.spec = *spec;
    ref.loaded = true;
  }
}

template <class T, class S>
FieldDef<T>& card_field(Schema<T>& schema, std::string name, CardRef<S> T::*member, std::string doc) {
  FieldDef<T> def;
  def.name = std::move(name);
  def.type = std::string(CardTraits<S>::kind) + " card";
  def.doc = std::move(doc);
  def.constraint = std::string("a card name from `moesim list ") + CardTraits<S>::plural + "`, or {card: NAME, <field>: <override>, ...}";
  def.parse = [member](const YAML::Node& node, T& obj, ParseContext& ctx, const std::string& path) {
    CardRef<S>& ref = obj.*member;
    if (node.IsScalar()) {
      ref.card = node.Scalar();
      load_card(ref, ctx, path, &node);
      return;
    }
    if (!node.IsMap()) {
      ctx.error(node, path, std::string("expected a ") + CardTraits<S>::kind + " card name or a mapping with `card:` (got " +
                                describe_node(node) + ")");
      return;
    }
    if (const YAML::Node name_node = node["card"]) {
      if (!name_node.IsScalar()) {
        ctx.error(name_node, join_path(path, "card"), "expected a card name (got " + describe_node(name_node) + ")");
        return;
      }
      ref.card = name_node.Scalar();
      ctx.record(join_path(path, "card"), name_node);
    } else if (ref.card.empty()) {
      ctx.error(node, path, "missing required key \"card\"");
      return;
    }
    const YAML::Node card_node = node["card"] ? node["card"] : node;
    load_card(ref, ctx, join_path(path, "card"), &card_node);
    if (!ref.loaded) return;
    typename Schema<S>::ParseOptions options;
    options.extra_keys = {"card"};
    schema_of<S>().parse(node, ref.spec, ctx, path, options);
  };
  def.dump = [member](const T& obj) {
    YAML::Node out(YAML::NodeType::Map);
    out["card"] = (obj.*member).card;
    const YAML::Node fields = schema_of<S>().dump((obj.*member).spec);
    for (auto it = fields.begin(); it != fields.end(); ++it) out[it->first] = it->second;
    return out;
  };
  return schema.custom(std::move(def));
}

}  // namespace moesim
