// Submit a task to kube and watch it until it runs, from Node.js with amqplib.
//
//   npm install            # in this folder: amqplib
//   KUBE_AMQP_URL=amqp://guest:guest@localhost:5672/%2F node submit-and-watch.js IMAGE [COMMAND...]
//
// Prints the manager's answer, then each state change of the task as it is published on
// kube.events; exits 0 once it runs, 1 if it fails, 2 after 60 s.
"use strict";
const amqp = require("amqplib");
const crypto = require("node:crypto");

const url = process.env.KUBE_AMQP_URL || "amqp://guest:guest@localhost:5672/%2F";
const [image, ...command] = process.argv.slice(2);
if (!image) {
  console.error("usage: node submit-and-watch.js IMAGE [COMMAND...]");
  process.exit(64);
}
const id = process.env.TASK_ID || `node-${crypto.randomBytes(4).toString("hex")}`;
const spec = {
  id, // the idempotency key: publishing the same id again makes no second task
  name: "node",
  image,
  command: command.length ? command : ["sleep", "3600"],
  pull_policy: process.env.PULL_POLICY || "if-not-present",
};

async function main() {
  const connection = await amqp.connect(url);
  const channel = await connection.createConfirmChannel();
  try {
    // 1. Watch before submitting: a queue of our own bound to task.* on kube.events.
    const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, "kube.events", "task.*");
    let settle;
    const done = new Promise((resolve) => (settle = resolve));
    await channel.consume(
      queue,
      (message) => {
        const task = JSON.parse(message.content.toString());
        if (task.id !== id) return;
        console.log(`${message.fields.routingKey} ${task.node || "-"}`);
        if (task.state === "running" || task.state === "completed") settle(0);
        if (task.state === "failed") settle(1);
      },
      { noAck: true },
    );

    // 2. Submit with RabbitMQ's direct reply-to: the answer comes back on this channel,
    //    which must consume amq.rabbitmq.reply-to before it publishes.
    const correlationId = crypto.randomUUID();
    let answered;
    const answer = new Promise((resolve) => (answered = resolve));
    await channel.consume(
      "amq.rabbitmq.reply-to",
      (message) => {
        if (message.properties.correlationId === correlationId) {
          answered(JSON.parse(message.content.toString()));
        }
      },
      { noAck: true },
    );
    channel.publish("kube.commands", "task.submit", Buffer.from(JSON.stringify(spec)), {
      contentType: "application/json",
      persistent: true,
      messageId: id,
      replyTo: "amq.rabbitmq.reply-to",
      correlationId,
    });
    await channel.waitForConfirms();
    const reply = await answer;
    console.log(JSON.stringify(reply));
    if (!reply.ok) return 1;

    // 3. Wait for the task to run (or fail).
    const timeout = new Promise((resolve) => setTimeout(() => resolve(2), 60_000).unref());
    return await Promise.race([done, timeout]);
  } finally {
    await connection.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error.message);
    process.exit(1);
  },
);
