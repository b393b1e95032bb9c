// A canvas to draw one digit on, dark ink on white paper, with a mouse, a finger or a pen
// (pointer events cover all three). The service inverts and centres it the way MNIST did.

const PAPER = "#ffffff";
const INK = "#111111";
// Of the canvas side. A digit drawn over about 60 % of the pad then has MNIST's proportions:
// strokes about an eighth of the digit's height.
const STROKE_FRACTION = 0.07;

export class DrawingPad {
  constructor(canvas, onStrokeEnd) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onStrokeEnd = onStrokeEnd;
    this.pointer = null; // the pointer drawing now, so a second finger does not scribble
    this.last = null;
    this.strokes = 0;
    canvas.addEventListener("pointerdown", (event) => this.#start(event));
    canvas.addEventListener("pointermove", (event) => this.#move(event));
    canvas.addEventListener("pointerup", (event) => this.#end(event));
    canvas.addEventListener("pointercancel", (event) => this.#end(event));
    this.clear();
  }

  get isEmpty() {
    return this.strokes === 0;
  }

  clear() {
    const { context, canvas } = this;
    context.fillStyle = PAPER; // opaque: a transparent PNG would reach the server as black
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.strokeStyle = INK;
    context.fillStyle = INK;
    context.lineWidth = STROKE_FRACTION * canvas.width;
    context.lineCap = "round";
    context.lineJoin = "round";
    this.strokes = 0;
  }

  // Encoded now, with toDataURL: Chromium runs canvas.toBlob in idle time, which can hold a
  // freshly drawn stroke back for a second before it is sent.
  pngBlob() {
    const base64 = this.canvas.toDataURL("image/png").split(",")[1];
    return new Blob([Uint8Array.from(atob(base64), (char) => char.charCodeAt(0))], { type: "image/png" });
  }

  #start(event) {
    if (this.pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.pointer = event.pointerId;
    this.last = this.#position(event);
    this.#dot(this.last); // a tap leaves a mark, as a pen would
  }

  #move(event) {
    if (event.pointerId !== this.pointer) return;
    const events = event.getCoalescedEvents?.() ?? [event];
    for (const each of events.length ? events : [event]) {
      const point = this.#position(each);
      this.context.beginPath();
      this.context.moveTo(...this.last);
      this.context.lineTo(...point);
      this.context.stroke();
      this.last = point;
    }
  }

  #end(event) {
    if (event.pointerId !== this.pointer) return;
    this.pointer = null;
    this.strokes += 1;
    this.onStrokeEnd();
  }

  #dot([x, y]) {
    this.context.beginPath();
    this.context.arc(x, y, this.context.lineWidth / 2, 0, 2 * Math.PI);
    this.context.fill();
  }

  // From CSS pixels on screen to the canvas's own pixels (it is drawn scaled to fit).
  #position(event) {
    const box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (this.canvas.width / box.width),
            (event.clientY - box.top) * (this.canvas.height / box.height)];
  }
}
