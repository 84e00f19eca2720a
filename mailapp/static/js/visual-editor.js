// The visual layout editor: GrapesJS with its MJML plugin, mailapp's variables as blocks, images uploaded
// to mailapp. The MJML goes back to the server in the form's hidden field; the server compiles it (MRML).
(function () {
  "use strict";
  var container = document.getElementById("gjs");
  var form = document.getElementById("visual-form");
  var source = form.querySelector("textarea[name=html]");
  var images = JSON.parse(document.getElementById("editor-images").textContent);
  var mjmlPlugin = window["grapesjs-mjml"];
  mjmlPlugin = mjmlPlugin && mjmlPlugin.default ? mjmlPlugin.default : mjmlPlugin;

  // What a marketer drops in to personalise a message: see the README's variables table.
  var VARIABLE_BLOCKS = [
    ["var-message", "Message", "<mj-text>{{ message }}</mj-text>"],
    ["var-greeting", "Greeting with name", "<mj-text>Hello{% if subscriber.name %} {{ subscriber.name }}{% endif %},</mj-text>"],
    ["var-name", "Recipient's name", "<mj-text>{{ subscriber.name }}</mj-text>"],
    ["var-email", "Recipient's email", "<mj-text>{{ subscriber.email }}</mj-text>"],
    ["var-attribute", "Attribute (city)", "<mj-text>{{ subscriber.attributes.city }}</mj-text>"],
    ["var-sender", "Sender", "<mj-text>{{ sender.name }} &lt;{{ sender.email }}&gt;</mj-text>"],
    ["var-subject", "Subject", "<mj-text font-size=\"24px\" font-weight=\"bold\">{{ campaign.subject }}</mj-text>"],
    ["var-unsubscribe", "Unsubscribe link", "<mj-text align=\"center\" font-size=\"12px\"><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></mj-text>"],
    ["var-view-in-browser", "View in browser link", "<mj-text align=\"center\" font-size=\"12px\"><a href=\"{{ view_in_browser_url }}\">View in your browser</a></mj-text>"]
  ];

  var editor = grapesjs.init({
    container: container,
    height: "75vh",
    fromElement: false,
    storageManager: false,
    // The panels' icons come from mailapp, never from a CDN.
    cssIcons: container.dataset.iconsUrl,
    components: source.value,
    plugins: [mjmlPlugin],
    pluginsOpts: (function () {
      var options = {};
      options[mjmlPlugin] = {
        // A grey placeholder of our own: the plugin's default lives on another host.
        imagePlaceholderSrc: "data:image/gif;base64,R0lGODlhAQABAIAAAMzMzP///ywAAAAAAQABAAACAkQBADs=",
        useCustomTheme: true
      };
      return options;
    })(),
    assetManager: {
      assets: images,
      upload: container.dataset.uploadUrl,
      uploadName: "files",
      multiUpload: true,
      multiUploadSuffix: "",
      headers: { "X-CSRFToken": container.dataset.csrfToken },
      credentials: "same-origin",
      autoAdd: true
    }
  });

  VARIABLE_BLOCKS.forEach(function (block) {
    editor.Blocks.add(block[0], {
      label: block[1],
      category: "Variables",
      content: block[2],
      attributes: { "data-testid": block[0] }
    });
  });

  editor.on("asset:upload:error", function (error) {
    var message = "The image could not be uploaded.";
    try {
      message = JSON.parse(error && error.message ? error.message : error).error.message;
    } catch (ignored) { /* not our JSON: keep the general message */ }
    window.alert(message);
  });

  form.addEventListener("submit", function () {
    source.value = editor.getHtml();
  });

  // For scripts and tests: the editor object, as GrapesJS documents it.
  window.mailappEditor = editor;
})();
