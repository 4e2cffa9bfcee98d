// The classification test page: drop an image (or choose one), see its category.

import { call } from "../api.js";
import { h, put, uid } from "../dom.js";
import { number, t } from "../i18n.js";
import { facts, problem, section } from "../ui.js";

export async function classify() {
  const result = h("div", { "aria-live": "polite", "data-testid": "classify-result" });
  const preview = h("div", { class: "preview" });
  const send = async (file) => {
    if (!file) return;
    put(preview, h("img", { src: URL.createObjectURL(file), alt: file.name }));
    put(result, h("p", { class: "hint" }, t("classify.working")));
    try {
      const answer = await call("POST", "/classify", file);
      put(
        result,
        facts([
          [t("classify.category"), h("strong", {}, answer.category)],
          [t("classify.confidence"), `${number(answer.confidence * 100, 1)}%`],
          [t("classify.cached"), answer.cached ? t("common.yes") : t("common.no")],
          [t("classify.model"), answer.model],
        ]),
      );
    } catch (error) {
      put(result, problem(error));
    }
  };
  const id = uid("image");
  const input = h("input", { id, type: "file", accept: "image/jpeg,image/png,image/webp", class: "visually-hidden", onchange: (e) => send(e.target.files[0]) });
  const zone = h(
    "label",
    {
      for: id,
      class: "drop",
      tabindex: "0",
      onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), input.click()),
      ondragover: (e) => {
        e.preventDefault();
        zone.classList.add("over");
      },
      ondragleave: () => zone.classList.remove("over"),
      ondrop: (e) => {
        e.preventDefault();
        zone.classList.remove("over");
        send(e.dataTransfer.files[0]);
      },
    },
    t("classify.drop"),
  );
  return h("div", {}, h("h1", {}, t("nav.classify")), section(t("classify.title"), input, zone, preview, result));
}
